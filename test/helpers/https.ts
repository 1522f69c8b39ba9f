import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'node:https';

/** One HTTPS request to the appliance, trusting its CA; resolves with status, headers and parsed JSON body. */
export function httpsJson(port: number, ca: string, method: string, path: string, options: { body?: unknown; bearer?: string } = {}): Promise<{ status: number; headers: IncomingHttpHeaders; body: any }> {
  return new Promise((resolve, reject) => {
    const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
    const req = request(
      { host: 'localhost', port, path, method, ca, headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...(options.bearer ? { authorization: `Bearer ${options.bearer}` } : {}) } },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : undefined }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** A GET of raw bytes (a bundle's zip) from the appliance with `bearer`, trusting its CA. */
export function httpsDownload(port: number, ca: string, path: string, bearer: string): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: 'localhost', port, path, method: 'GET', ca, headers: { authorization: `Bearer ${bearer}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * Logs `username` in with its one-time password and changes it to `newPassword` (the first login of
 * an account must: ERR_PASSWORD_CHANGE_REQUIRED until then); returns the session token, which may now
 * do what the account's role allows.
 */
export async function loginChangingPassword(port: number, ca: string, username: string, oneTimePassword: string, newPassword: string): Promise<string> {
  const login = await httpsJson(port, ca, 'POST', '/api/v1/auth/login', { body: { username, password: oneTimePassword } });
  if (login.status !== 200) throw new Error(`login of ${username}: ${login.status} ${JSON.stringify(login.body)}`);
  const token = login.body.token as string;
  const change = await httpsJson(port, ca, 'POST', '/api/v1/auth/password', { bearer: token, body: { current_password: oneTimePassword, new_password: newPassword } });
  if (change.status !== 200) throw new Error(`password change of ${username}: ${change.status} ${JSON.stringify(change.body)}`);
  return token;
}
