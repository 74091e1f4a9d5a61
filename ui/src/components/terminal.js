// xterm.js attached to an instance: an interactive exec or the text console, over the
// operation's websockets (data on fd 0, window size on control), as the incus CLI attaches.
import { useEffect, useRef, useState } from "preact/hooks";
import { Terminal as XTerm } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { call, operationSocket } from "../api.js";
import { html } from "../html.js";
import { ErrorBox } from "./common.js";

/** ``start(width, height)`` answers the POST that makes the operation (exec or console). */
export function Terminal({ start, label }) {
  const box = useRef(null);
  const [error, setError] = useState(null);
  const [ended, setEnded] = useState(false);
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    const term = new XTerm({ convertEol: false, cursorBlink: true, fontSize: 14 });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(box.current);
    fit.fit();
    const encoder = new TextEncoder();
    let data = null;
    let control = null;
    let closed = false;
    setEnded(false);
    (async () => {
      const answer = await call("POST", ...start(term.cols, term.rows));
      const fds = answer.metadata.metadata.fds;
      control = operationSocket(answer.operation, fds.control);
      data = operationSocket(answer.operation, fds["0"]);
      data.onmessage = (m) => term.write(typeof m.data === "string" ? m.data : new Uint8Array(m.data));
      data.onclose = () => {
        if (!closed) {
          term.write(`\r\n[${label} ended]\r\n`);
          setEnded(true);
        }
      };
      term.onData((text) => data.readyState === WebSocket.OPEN && data.send(encoder.encode(text)));
      term.onResize(({ cols, rows }) => {
        if (control.readyState === WebSocket.OPEN) {
          control.send(JSON.stringify({ command: "window-resize", args: { width: String(cols), height: String(rows) } }));
        }
      });
      term.focus();
    })().catch(setError);
    const refit = () => fit.fit();
    addEventListener("resize", refit);
    return () => {
      closed = true;
      removeEventListener("resize", refit);
      data?.close();
      control?.close();
      term.dispose();
    };
  }, [attempt]);

  return html`<div class="terminal-box">
    <${ErrorBox} error=${error} />
    <div class="term-host" ref=${box}></div>
    ${ended && html`<button onClick=${() => setAttempt(attempt + 1)}>Reconnect</button>`}
  </div>`;
}
