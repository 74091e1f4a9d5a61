// Warnings the server raised, with their status.
import { run } from "../api.js";
import { html } from "../html.js";
import { ActionButton, ErrorBox, Page, Table, date, useResource } from "../components/common.js";

export function Warnings() {
  const { data, error, reload } = useResource("/1.0/warnings?recursion=1", { global: true });
  const acknowledge = (w) => () => run("PUT", `/1.0/warnings/${w.uuid}`, { status: "acknowledged" }, { global: true });
  return html`<${Page} title="Warnings">
    <${ErrorBox} error=${error} />
    <${Table} rows=${data} rowKey=${(w) => w.uuid} empty="No warnings." columns=${[
      ["Type", (w) => w.type], ["Message", (w) => w.last_message], ["Status", (w) => w.status], ["Severity", (w) => w.severity],
      ["Count", (w) => w.count], ["Project", (w) => w.project], ["Last seen", (w) => date(w.last_seen_at)],
      ["", (w) => w.status === "new" && html`<${ActionButton} label="Acknowledge" action=${acknowledge(w)} onDone=${reload} />`],
    ]} />
  </${Page}>`;
}
