/** Latency distribution summary, in milliseconds. */
export interface Distribution {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** The most of `times` (ms) that fall within any one window of `windowMs`: how many arrived together at worst. */
export function busiestWindow(times: readonly number[], windowMs: number): number {
  const sorted = Float64Array.from(times).sort();
  let most = 0;
  for (let first = 0, last = 0; last < sorted.length; last += 1) {
    while (sorted[last]! - sorted[first]! >= windowMs) first += 1;
    most = Math.max(most, last - first + 1);
  }
  return most;
}

/** Nearest-rank percentiles: every figure is a latency that was actually observed. */
export function distribution(samples: readonly number[]): Distribution {
  // A typed array sorts numerically in native code: seconds faster than a comparator on millions of samples.
  const sorted = Float64Array.from(samples).sort();
  const rank = (p: number): number => (sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!);
  return { count: sorted.length, p50: rank(50), p95: rank(95), p99: rank(99), max: sorted.at(-1) ?? Number.NaN };
}

/**
 * 2^SUB_BUCKET_BITS values (µs) counted one by one; above them each power of two is split into
 * 2^(SUB_BUCKET_BITS - 1) buckets, so a latency is kept to within 1/128 (0.8 %) of its value, as an
 * HDR histogram with two significant digits keeps it.
 */
const SUB_BUCKET_BITS = 8;
const SUB_BUCKETS = 1 << SUB_BUCKET_BITS;
/** Latencies are counted in microseconds; 2^32 µs (71 minutes) is beyond any run's bound. */
const MAGNITUDES = 32 - SUB_BUCKET_BITS + 1;

/** A histogram as sent between processes: [bucket, count] pairs of the non-empty buckets, and the exact max (ms). */
export interface LatencyHistogramJson {
  buckets: Array<[number, number]>;
  maxMs: number;
}

/**
 * A log-linear latency histogram of fixed size (a few thousand buckets whatever the sample count), so
 * a long run of many agents is counted without keeping every sample, and the histograms of several
 * generator processes merge exactly by adding counts (percentiles are never averaged).
 * Percentiles are nearest-rank over the buckets, reported at each bucket's upper bound (at most
 * 0.8 % above the observed latency) or the max when that is lower; max is exact.
 */
export class LatencyHistogram {
  readonly #counts = new Float64Array(MAGNITUDES * SUB_BUCKETS);
  #count = 0;
  #maxMs = 0;

  get count(): number {
    return this.#count;
  }

  /** Counts one latency in ms (negative values count as 0). */
  record(ms: number): void {
    this.#counts[bucketOf(Math.max(0, Math.round(ms * 1000)))]! += 1;
    this.#count += 1;
    if (ms > this.#maxMs) this.#maxMs = ms;
  }

  /** Adds every count of `other` to this histogram. */
  merge(other: LatencyHistogram | LatencyHistogramJson): this {
    const json = other instanceof LatencyHistogram ? other.toJSON() : other;
    for (const [bucket, count] of json.buckets) {
      this.#counts[bucket]! += count;
      this.#count += count;
    }
    this.#maxMs = Math.max(this.#maxMs, json.maxMs);
    return this;
  }

  /** The latency (ms) at or below which `percent` % of the samples fall; NaN when empty. */
  percentile(percent: number): number {
    if (this.#count === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil((percent / 100) * this.#count));
    let seen = 0;
    for (let bucket = 0; bucket < this.#counts.length; bucket += 1) {
      seen += this.#counts[bucket]!;
      if (seen >= rank) return Math.min(upperBoundUs(bucket) / 1000, this.#maxMs);
    }
    return this.#maxMs;
  }

  summary(): Distribution {
    return { count: this.#count, p50: this.percentile(50), p95: this.percentile(95), p99: this.percentile(99), max: this.#count === 0 ? Number.NaN : this.#maxMs };
  }

  toJSON(): LatencyHistogramJson {
    const buckets: Array<[number, number]> = [];
    this.#counts.forEach((count, bucket) => {
      if (count > 0) buckets.push([bucket, count]);
    });
    return { buckets, maxMs: this.#maxMs };
  }

  static fromJSON(json: LatencyHistogramJson): LatencyHistogram {
    return new LatencyHistogram().merge(json);
  }
}

/** Values below SUB_BUCKETS µs have a bucket each; above, each power of two is split into SUB_BUCKETS / 2 buckets. */
function bucketOf(us: number): number {
  const clamped = Math.min(us, 2 ** 32 - 1);
  if (clamped < SUB_BUCKETS) return clamped;
  const magnitude = 31 - Math.clz32(clamped) - (SUB_BUCKET_BITS - 1);
  return magnitude * (SUB_BUCKETS / 2) + (clamped >>> magnitude);
}

/** The largest µs value counted in `bucket`. */
function upperBoundUs(bucket: number): number {
  if (bucket < SUB_BUCKETS) return bucket;
  const magnitude = Math.floor(bucket / (SUB_BUCKETS / 2)) - 1;
  const sub = bucket - magnitude * (SUB_BUCKETS / 2);
  return (sub + 1) * 2 ** magnitude - 1;
}
