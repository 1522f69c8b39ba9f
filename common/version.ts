declare const __CT_OPS_VERSION__: string | undefined;

/** The product version, injected by the build; "0.0.0-dev" when run from source. */
export const PRODUCT_VERSION: string = typeof __CT_OPS_VERSION__ === 'string' ? __CT_OPS_VERSION__ : '0.0.0-dev';
