import { request } from 'node:https';

/** One HTTPS request to the appliance, trusting its CA; resolves with status and parsed JSON body. */
export function httpsJson(port: number, ca: string, method: string, path: string, options: { body?: unknown; bearer?: string } = {}): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
    const req = request(
      { host: 'localhost', port, path, method, ca, headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...(options.bearer ? { authorization: `Bearer ${options.bearer}` } : {}) } },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
