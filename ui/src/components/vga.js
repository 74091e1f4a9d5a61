// A VM's screen in the page: noVNC on the console operation's data websocket, which carries
// the VM's VNC display as it is.
import { useEffect, useRef, useState } from "preact/hooks";
import RFB from "@novnc/novnc";
import { call, operationSocket } from "../api.js";
import { html } from "../html.js";
import { ErrorBox } from "./common.js";

export function VgaConsole({ instance }) {
  const box = useRef(null);
  const [error, setError] = useState(null);
  const [status, setStatus] = useState("connecting");
  useEffect(() => {
    let rfb = null;
    let control = null;
    (async () => {
      const answer = await call("POST", `/1.0/instances/${encodeURIComponent(instance)}/console`, {
        type: "vga", width: 0, height: 0,
      });
      const fds = answer.metadata.metadata.fds;
      control = operationSocket(answer.operation, fds.control);
      const channel = operationSocket(answer.operation, fds["0"]);
      rfb = new RFB(box.current, channel);
      rfb.scaleViewport = true;
      rfb.addEventListener("connect", () => setStatus("connected"));
      rfb.addEventListener("disconnect", () => setStatus("disconnected"));
    })().catch(setError);
    return () => {
      rfb?.disconnect();
      control?.close();
    };
  }, [instance]);
  return html`<div class="vga-box">
    <${ErrorBox} error=${error} />
    <p class="note">Display: ${status}</p>
    <div class="vga" ref=${box}></div>
  </div>`;
}
