// Pieces every page uses: loading an API resource, errors, tables, busy buttons, sizes.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { call } from "../api.js";
import { html } from "../html.js";

/** Loads ``path`` (recursion as given); {data, etag, error, reload}. ``every``: poll period, ms. */
export function useResource(path, { every = 0, global = false } = {}) {
  const [state, setState] = useState({ data: null, etag: null, error: null });
  const alive = useRef(true);
  const reload = useCallback(() => {
    if (!path) return Promise.resolve();
    return call("GET", path, undefined, { global })
      .then(({ metadata, etag }) => alive.current && setState({ data: metadata, etag, error: null }))
      .catch((error) => alive.current && setState((s) => ({ ...s, error })));
  }, [path, global]);
  useEffect(() => {
    alive.current = true;
    reload();
    const timer = every ? setInterval(reload, every) : null;
    return () => {
      alive.current = false;
      if (timer) clearInterval(timer);
    };
  }, [reload, every]);
  return { ...state, reload };
}

export function ErrorBox({ error }) {
  if (!error) return null;
  return html`<div class="error" role="alert">${error.message || String(error)}</div>`;
}

/** A button that runs ``action`` (a promise), shows it is busy and reports its error. */
export function ActionButton({ label, action, onDone, onError, kind = "", disabled = false, title = "" }) {
  const [busy, setBusy] = useState(false);
  const click = async () => {
    setBusy(true);
    try {
      const result = await action();
      onDone?.(result);
    } catch (error) {
      onError ? onError(error) : alert(error.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<button class=${kind} disabled=${busy || disabled} onClick=${click} title=${title}>
    ${busy ? `${label}…` : label}</button>`;
}

export function Table({ columns, rows, empty = "Nothing here yet.", rowKey = (r) => r.name }) {
  if (!rows) return html`<p class="loading">Loading…</p>`;
  if (!rows.length) return html`<p class="empty">${empty}</p>`;
  return html`<table>
    <thead><tr>${columns.map(([title]) => html`<th>${title}</th>`)}</tr></thead>
    <tbody>${rows.map((row) => html`<tr key=${rowKey(row)} data-name=${rowKey(row)}>
      ${columns.map(([, cell]) => html`<td>${cell(row)}</td>`)}</tr>`)}</tbody>
  </table>`;
}

export function bytes(value) {
  if (value === undefined || value === null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = Number(value);
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit += 1;
  }
  return `${n.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

export function date(value) {
  if (!value || value.startsWith("0001-")) return "";
  return new Date(value).toLocaleString();
}

/** A bar showing ``used`` of ``total``. */
export function UsageBar({ used, total }) {
  const share = total ? Math.min(100, (100 * used) / total) : 0;
  return html`<div class="usage" title=${`${bytes(used)} of ${bytes(total)}`}>
    <div class="usage-fill" style=${`width:${share.toFixed(1)}%`}></div>
    <span>${bytes(used)} / ${total ? bytes(total) : "?"}</span></div>`;
}

export function Status({ status }) {
  return html`<span class=${"status status-" + String(status).toLowerCase()}>${status}</span>`;
}

export function Page({ title, actions, children }) {
  return html`<section class="page">
    <header><h1>${title}</h1><div class="actions">${actions}</div></header>
    ${children}
  </section>`;
}

export function KeyValues({ values }) {
  const entries = Object.entries(values || {});
  if (!entries.length) return html`<p class="empty">None.</p>`;
  return html`<dl class="kv">${entries.map(([k, v]) => html`<dt>${k}</dt><dd>${typeof v === "object" ? JSON.stringify(v) : String(v)}</dd>`)}</dl>`;
}
