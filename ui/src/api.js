// The UI's only way to the server: the public REST API, same origin, Incus's envelopes.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let project = localStorage.getItem("stapes.project") || "default";

export function currentProject() {
  return project;
}

export function setProject(name) {
  project = name;
  localStorage.setItem("stapes.project", name);
}

/** A URL of the API with the current project added (unless ``global`` or already there). */
export function url(path, { global = false } = {}) {
  if (global || path.includes("project=")) return path;
  const sep = path.includes("?") ? "&" : "?";
  return `${path}${sep}project=${encodeURIComponent(project)}`;
}

const prefetched = new Map();

/** Starts a GET the first page will make as it renders, while the rest of the page loads. */
export function prefetch(path, options = {}) {
  const answer = call("GET", path, undefined, options);
  answer.catch(() => {}); // a refusal is seen by the page that takes it, not here
  prefetched.set(url(path, options), answer);
}

/**
 * One API call. Resolves to {metadata, etag, operation} for a sync or async answer; rejects with
 * ApiError (the envelope's message and status) for an error.
 */
export async function call(method, path, body, { etag, global = false, raw = false } = {}) {
  const early = method === "GET" ? prefetched.get(url(path, { global })) : undefined;
  if (early) {
    prefetched.delete(url(path, { global }));
    return early;
  }
  const headers = {};
  if (body !== undefined && !raw) headers["Content-Type"] = "application/json";
  if (etag) headers["If-Match"] = etag;
  const response = await fetch(url(path, { global }), {
    method,
    headers,
    body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
    credentials: "same-origin",
  });
  let envelope;
  try {
    envelope = await response.json();
  } catch {
    throw new ApiError(response.status, `${method} ${path}: ${response.status} ${response.statusText}`);
  }
  if (envelope.type === "error" || !response.ok) {
    throw new ApiError(envelope.error_code || response.status, envelope.error || response.statusText);
  }
  return {
    metadata: envelope.metadata,
    etag: response.headers.get("ETag"),
    operation: envelope.type === "async" ? envelope.operation : null,
  };
}

export const get = (path, options) => call("GET", path, undefined, options).then((r) => r.metadata);

/** Waits for an operation to end; rejects with its error when it failed. */
export async function wait(operation) {
  for (;;) {
    const { metadata } = await call("GET", `${operation}/wait?timeout=30`, undefined, { global: true });
    if (metadata.status_code === 200) return metadata;
    if (metadata.status_code >= 400) throw new ApiError(metadata.status_code, metadata.err || metadata.status);
  }
}

/** A call answered by an operation, waited for. */
export async function run(method, path, body, options) {
  const answer = await call(method, path, body, options);
  return answer.operation ? wait(answer.operation) : answer.metadata;
}

/** A websocket on this server (the browser's client certificate goes with it). */
export function socket(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}${path}`);
  ws.binaryType = "arraybuffer";
  return ws;
}

export function operationSocket(operation, secret) {
  return socket(`${operation}/websocket?secret=${encodeURIComponent(secret)}`);
}

/** Follows /1.0/events of the current project; returns a function that stops following. */
export function followEvents(types, onEvent) {
  let ws;
  let stopped = false;
  const open = () => {
    ws = socket(url(`/1.0/events?type=${types.join(",")}`));
    ws.onmessage = (message) => {
      try {
        onEvent(JSON.parse(message.data));
      } catch {
        /* a message that is not JSON is not ours */
      }
    };
    ws.onclose = () => {
      if (!stopped) setTimeout(open, 2000);
    };
  };
  open();
  return () => {
    stopped = true;
    ws.close();
  };
}

export const nameOf = (path) => decodeURIComponent(path.split("?")[0].split("/").pop());
