// The console's only way to the server: the public HTTP API, with the session cookie
// (sent by the browser, HttpOnly) and, on every state-changing request, the session's
// CSRF token in X-CSRF-Token. A 401 means the session ended: back to sign-in.

let csrfToken = '';
let signedOut = () => {};

export function setCsrf(token) { csrfToken = token || ''; }
export function onSignedOut(fn) { signedOut = fn; }

export class ApiError extends Error {
  constructor(status, problem) {
    const detail = problem?.detail || problem?.title || `HTTP ${status}`;
    const fieldName = problem?.field ? ` (${problem.field})` : '';
    super(`${detail}${fieldName}`);
    this.status = status;
    this.problem = problem;
  }
}

/** `api('GET', '/v1/...')`; body objects go as JSON. `opts.quiet401`: no redirect. */
export async function api(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrfToken;
  let payload;
  if (typeof body === 'string') { payload = body; headers['Content-Type'] = opts.type || 'text/plain'; }
  else if (body !== undefined) { payload = JSON.stringify(body); headers['Content-Type'] = 'application/json'; }
  let r;
  try {
    r = await fetch(path, { method, headers, body: payload, credentials: 'same-origin', cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, { detail: `the server did not answer (${e.message})` });
  }
  const text = await r.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch { data = text; } }
  if (r.status === 401 && !opts.quiet401) signedOut();
  if (!r.ok) throw new ApiError(r.status, typeof data === 'object' ? data : { detail: text || r.statusText });
  return data;
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body) => api('POST', path, body ?? {});
export const patch = (path, body) => api('PATCH', path, body);
export const put = (path, body) => api('PUT', path, body);
export const del = (path) => api('DELETE', path);

/** `?a=1&b=2` from an object, leaving out empty values. */
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}

export const enc = encodeURIComponent;
