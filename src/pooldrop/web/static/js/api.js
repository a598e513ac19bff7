// The JSON API as the console uses it: the access token, problem documents, uploads with
// progress, authorized downloads and the SSE URL. Every path starts with /api/v1/ and is written
// out literally so the test suite can check each one against the OpenAPI document.

const TOKEN_KEY = "pooldrop.console.token";

/** Fired on window when a request with a token answers 401: the session is over. */
export const UNAUTHENTICATED = "pooldrop:unauthenticated";

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled: behave as signed out
  }
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // nothing stored
  }
}

/** An answer other than 2xx; `detail` and `code` come from the RFC 9457 problem document. */
export class ApiError extends Error {
  constructor(status, problem, retryAfter = null) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = problem.code ?? null;
    this.detail = problem.detail || problem.title || `The server answered ${status}.`;
    this.retryAfter = retryAfter;
  }
}

const NETWORK_PROBLEM = {
  title: "Network error",
  detail: "The server could not be reached. Check the connection and try again.",
};

/** Path segments are ids from the server; encode them anyway. */
export const enc = encodeURIComponent;

/** `path` plus the non-empty entries of `query` as a query string. */
export function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

function problemFromText(status, contentType, text) {
  if (contentType.includes("json")) {
    try {
      const parsed = JSON.parse(text);
      if (parsed && typeof parsed === "object") {
        // FastAPI's own errors put a list or a string in `detail`.
        if (typeof parsed.detail !== "string" && parsed.detail !== undefined) {
          parsed.detail = JSON.stringify(parsed.detail);
        }
        return parsed;
      }
    } catch {
      // fall through to the plain text
    }
  }
  return { title: `HTTP ${status}`, detail: text.trim().slice(0, 300) || `The server answered ${status}.` };
}

function retryAfterOf(value) {
  const seconds = Number(value);
  return value && Number.isFinite(seconds) ? seconds : null;
}

function authHeaders(extra = {}) {
  const headers = { Accept: "application/json", ...extra };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

function failed(status, problem, retryAfter, hadToken) {
  const err = new ApiError(status, problem, retryAfter);
  if (status === 401 && hadToken) window.dispatchEvent(new CustomEvent(UNAUTHENTICATED, { detail: err }));
  return err;
}

/**
 * Call the API. `json` is sent as the body; `raw` returns the Response instead of parsed JSON.
 * Resolves to the parsed body (null for 204); rejects with ApiError.
 */
export async function request(method, path, { json, query, raw = false, signal } = {}) {
  const headers = authHeaders(json === undefined ? {} : { "Content-Type": "application/json" });
  let response;
  try {
    response = await fetch(withQuery(path, query), {
      method,
      headers,
      body: json === undefined ? undefined : JSON.stringify(json),
      signal,
      cache: "no-store",
      credentials: "omit",
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, NETWORK_PROBLEM);
  }
  if (!response.ok) {
    const text = await response.text().catch(() => "");
    const problem = problemFromText(response.status, response.headers.get("content-type") || "", text);
    throw failed(response.status, problem, retryAfterOf(response.headers.get("retry-after")), "Authorization" in headers);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

export const get = (path, opts) => request("GET", path, opts);
export const post = (path, json, opts) => request("POST", path, { ...opts, json });
export const put = (path, json, opts) => request("PUT", path, { ...opts, json });
export const patch = (path, json, opts) => request("PATCH", path, { ...opts, json });
export const del = (path, opts) => request("DELETE", path, opts);

/**
 * Upload one file with XMLHttpRequest (fetch has no upload progress). Returns
 * `{promise, abort}`; the promise resolves to `{upload, replay}` (`replay`: the server had this
 * client_upload_id already and answered with the first upload).
 */
export function uploadFile(poolId, file, { ts, name, clientUploadId, onProgress }) {
  const xhr = new XMLHttpRequest();
  const url = withQuery(`/api/v1/pools/${enc(poolId)}/uploads`, {
    ts,
    name,
    client_upload_id: clientUploadId,
  });
  const promise = new Promise((resolve, reject) => {
    xhr.open("POST", url);
    const headers = authHeaders({ "Content-Type": file.type || "application/octet-stream" });
    for (const [key, value] of Object.entries(headers)) xhr.setRequestHeader(key, value);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded, e.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve({ upload: JSON.parse(xhr.responseText), replay: xhr.status === 200 });
        } catch {
          reject(new ApiError(xhr.status, { detail: "The server's answer was not JSON." }));
        }
        return;
      }
      const problem = problemFromText(xhr.status, xhr.getResponseHeader("content-type") || "", xhr.responseText);
      reject(failed(xhr.status, problem, retryAfterOf(xhr.getResponseHeader("retry-after")), "Authorization" in headers));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, NETWORK_PROBLEM)));
    xhr.addEventListener("abort", () => reject(new DOMException("Upload cancelled", "AbortError")));
    xhr.send(file);
  });
  return { promise, abort: () => xhr.abort() };
}

/**
 * Download content that needs the Authorization header: fetch it as a blob, then hand it to the
 * browser as a file. (A plain link cannot carry the header.)
 */
export async function saveAs(path, filename) {
  const response = await request("GET", path, { raw: true });
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename || "download";
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The browser reads the blob asynchronously after click(); give it time before freeing it.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export function uploadContentPath(poolId, uploadId) {
  return `/api/v1/pools/${enc(poolId)}/uploads/${enc(uploadId)}/content`;
}

export function resultContentPath(poolId, resultId) {
  return `/api/v1/pools/${enc(poolId)}/results/${enc(resultId)}/content`;
}

/** The pool's Server-Sent Events URL; EventSource cannot send headers, so the token rides along. */
export function eventStreamUrl(poolId) {
  return withQuery(`/api/v1/pools/${enc(poolId)}/events/stream`, { access_token: getToken() });
}
