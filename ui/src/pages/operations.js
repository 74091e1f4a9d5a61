// Operations now, and the events of the project as they come.
import { useEffect, useState } from "preact/hooks";
import { followEvents } from "../api.js";
import { html } from "../html.js";
import { ErrorBox, Page, Table, date, useResource } from "../components/common.js";

const KEEP = 100;

export function Operations() {
  const { data, error, reload } = useResource("/1.0/operations?recursion=1");
  const [events, setEvents] = useState([]);
  useEffect(() => followEvents(["operation", "lifecycle"], (event) => {
    setEvents((before) => [event, ...before].slice(0, KEEP));
    if (event.type === "operation") reload();
  }), [reload]);
  const operations = Object.values(data || {}).flat();
  return html`<${Page} title="Operations">
    <${ErrorBox} error=${error} />
    <${Table} rows=${data ? operations : null} rowKey=${(o) => o.id} empty="No operations running." columns=${[
      ["Description", (o) => o.description], ["Status", (o) => o.status], ["Class", (o) => o.class],
      ["Created", (o) => date(o.created_at)], ["Resources", (o) => Object.values(o.resources || {}).flat().join(", ")],
    ]} />
    <h2>Events</h2>
    <ul class="events">${events.map((e) => html`<li><span class="time">${date(e.timestamp)}</span> <b>${e.type}</b>
      ${e.type === "lifecycle" ? `${e.metadata.action} ${e.metadata.source}` : `${e.metadata.description} — ${e.metadata.status}`}</li>`)}</ul>
  </${Page}>`;
}
