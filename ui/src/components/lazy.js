// A component whose code (and the libraries it brings) is fetched the first time it is shown,
// so the instance list does not wait for xterm.js, noVNC, uPlot or the YAML parser.
import { useEffect, useState } from "preact/hooks";
import { html } from "../html.js";

export function lazy(load, name) {
  let loaded = null;
  return function Lazy(props) {
    const [Component, setComponent] = useState(() => loaded);
    const [error, setError] = useState(null);
    useEffect(() => {
      if (!Component) {
        load()
          .then((module) => {
            loaded = module[name];
            setComponent(() => loaded);
          })
          .catch(setError);
      }
    }, []);
    if (error) return html`<div class="error">Could not load this part of the page: ${error.message}</div>`;
    return Component ? html`<${Component} ...${props} />` : html`<p class="loading">Loading…</p>`;
  };
}
