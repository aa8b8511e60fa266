// The run inspector: the list of recent runs (/ui) and one run (/ui/flows/{id}) — its graph laid
// out by dagre, each node coloured by its state and updated live from the run's Server-Sent
// Events, a timeline, the growing text of every llm_text element, and an element's details on
// click. Every value from a flow is shown through textContent / attributes, never as HTML.
// Each node is an SVG <g class="node"> carrying data-element-id and data-state (pending,
// running, completed, failed, skipped, paused, cancelled).
"use strict";

const BASE = document.querySelector('meta[name="flow-executor-base"]').content;
const TOKEN_KEY = "flow-executor-token";
const app = document.getElementById("app");
const heading = document.getElementById("heading");

class Unauthorized extends Error {}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(path) {
  const response = await fetch(BASE + path, { headers: authHeaders() });
  if (response.status === 401) throw new Unauthorized();
  if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
  return response.json();
}

function askForToken() {
  const form = document.getElementById("login");
  form.hidden = false;
  app.replaceChildren(el("p", { class: "muted" }, "This service needs an API key."));
  form.onsubmit = (submitted) => {
    submitted.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value);
    form.hidden = true;
    main();
  };
}

function statusBadge(status) {
  return el("span", { class: "status", "data-status": status }, status);
}

function json(value) {
  return el("pre", {}, JSON.stringify(value, null, 2));
}

// -- the list of runs ---------------------------------------------------------------------------

async function showRuns() {
  heading.textContent = "recent runs";
  const page = await api("/flows?limit=100");
  const rows = page.runs.map((run) =>
    el("tr", { "data-flow-id": run.flow_id },
      el("td", {}, el("a", { href: `${BASE}/ui/flows/${encodeURIComponent(run.flow_id)}` }, run.flow_id)),
      el("td", {}, statusBadge(run.status)),
      el("td", {}, run.created_at ?? ""),
      el("td", {}, run.duration_ms == null ? "" : `${Math.round(run.duration_ms)} ms`),
      el("td", {}, run.error ? `${run.error.error_type}: ${run.error.message}` : (run.waiting || []).length ? "waiting for input" : ""),
    ));
  const head = el("tr", {}, ...["flow", "status", "started", "duration", "error / waiting"].map((h) => el("th", {}, h)));
  app.replaceChildren(rows.length ? el("table", { id: "runs" }, el("thead", {}, head), el("tbody", {}, ...rows))
    : el("p", { class: "muted" }, "No runs yet."));
}

// -- one run ------------------------------------------------------------------------------------

const NODE_WIDTH = 170;
const NODE_HEIGHT = 46;

function branchLabel(connection) {
  return connection.from_output ?? "";
}

function drawGraph(definition, onSelect) {
  const graph = new dagre.graphlib.Graph({ multigraph: true });
  graph.setGraph({ rankdir: "LR", nodesep: 24, ranksep: 60, marginx: 10, marginy: 10 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const [id] of Object.entries(definition.elements)) graph.setNode(id, { width: NODE_WIDTH, height: NODE_HEIGHT });
  definition.connections.forEach((c, index) => {
    const label = branchLabel(c);
    graph.setEdge(c.from_id, c.to_id, { label, width: label.length * 6, height: label ? 14 : 0 }, String(index));
  });
  dagre.layout(graph);
  const size = graph.graph();
  const root = svg("svg", { class: "graph", viewBox: `0 0 ${size.width} ${size.height}`, role: "img" });
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#9ca3af" }));
  defs.append(marker);
  root.append(defs);
  for (const edge of graph.edges()) {
    const data = graph.edge(edge);
    const group = svg("g", { class: "edge", "data-from": edge.v, "data-to": edge.w });
    group.append(svg("path", { d: "M" + data.points.map((p) => `${p.x},${p.y}`).join(" L") }));
    if (data.label) {
      const text = svg("text", { x: data.x, y: data.y, "text-anchor": "middle" });
      text.textContent = data.label;
      group.append(text);
    }
    root.append(group);
  }
  const nodes = new Map();
  for (const id of graph.nodes()) {
    const box = graph.node(id);
    const element = definition.elements[id];
    const group = svg("g", { class: "node", "data-element-id": id, "data-state": "pending", tabindex: 0,
      transform: `translate(${box.x - NODE_WIDTH / 2},${box.y - NODE_HEIGHT / 2})` });
    group.append(svg("rect", { width: NODE_WIDTH, height: NODE_HEIGHT }));
    const name = svg("text", { x: 10, y: 19 });
    name.textContent = (element.name || id).slice(0, 24);
    const type = svg("text", { x: 10, y: 36, class: "type" });
    type.textContent = element.type;
    group.append(name, type);
    group.addEventListener("click", () => onSelect(id));
    nodes.set(id, group);
    root.append(group);
  }
  return { root, nodes };
}

function stateOfError(data) {
  return data.error_type === "cancelled" ? "cancelled" : "failed";
}

class RunView {
  constructor(flowId, definition) {
    this.flowId = flowId;
    this.definition = definition;
    this.elements = new Map(); // element id → what the events said of it
    this.chunks = new Map(); // llm element id → its <pre>
    this.chunkCounts = new Map(); // "scope/element" → its timeline <li>
    this.selected = null;
    const { root, nodes } = drawGraph(definition, (id) => this.select(id));
    this.nodes = nodes;
    this.status = statusBadge("running");
    this.status.id = "flow-status";
    this.waiting = el("div", { id: "waiting" });
    this.timeline = el("ol", { id: "timeline" });
    this.details = el("div", { id: "details" }, el("p", { class: "muted" }, "Click an element to see its inputs, outputs and timings."));
    this.llm = el("div", { id: "llm-text" });
    for (const [id, element] of Object.entries(definition.elements)) {
      if (element.type !== "llm_text") continue;
      const text = el("pre", { "data-llm-element-id": id });
      this.chunks.set(id, text);
      this.llm.append(el("h3", {}, element.name || id), text);
    }
    app.replaceChildren(el("div", { class: "run" },
      el("div", {},
        el("section", { class: "panel" }, el("h2", {}, "Flow ", this.status), root, this.waiting),
        el("section", { class: "panel" }, el("h2", {}, "LLM output"), this.llm)),
      el("div", {},
        el("section", { class: "panel" }, el("h2", {}, "Element"), this.details),
        el("section", { class: "panel" }, el("h2", {}, "Timeline"), this.timeline))));
  }

  llmText(key, event) {
    // The text of a streaming element: top-level (`key` is its id), or one run of it inside a
    // sub-flow (`key` is "each[3] / summarise").
    if (!this.chunks.has(key)) {
      const text = el("pre", { "data-llm-element-id": event.element_id, "data-scope": key });
      this.chunks.set(key, text);
      this.llm.append(el("h3", {}, key), text);
    }
    return this.chunks.get(key);
  }

  record(id) {
    if (!this.elements.has(id)) this.elements.set(id, {});
    return this.elements.get(id);
  }

  setState(id, state) {
    const node = this.nodes.get(id);
    if (node) node.setAttribute("data-state", state);
    this.record(id).state = state;
    if (this.selected === id) this.select(id);
  }

  apply(event) {
    const where = (event.scope || []).map((s) => `${s.element_id}[${s.index}] / `).join("");
    if (event.type === "llm_chunk") {
      const key = where + event.element_id;
      this.llmText(key, event).append(event.data.chunk);
      let line = this.chunkCounts.get(key);
      if (!line) {
        line = el("li", { "data-type": "llm_chunk" });
        this.chunkCounts.set(key, line);
        this.timeline.append(line);
      }
      line.dataset.count = String(Number(line.dataset.count || 0) + 1);
      line.textContent = `#${event.seq} llm_chunk ${key} × ${line.dataset.count}`;
      return;
    }
    const summary = event.type === "element_error" ? `${event.data.error_type}: ${event.data.message}`
      : event.type === "flow_completed" ? event.data.status : "";
    this.timeline.append(el("li", { "data-type": event.type },
      `#${event.seq} ${event.timestamp.slice(11, 23)} ${event.type} ${event.element_id ? where + event.element_id : ""} ${summary}`));
    if (event.scope) {  // inside a sub-flow: the node is its holder's
      const key = where + event.element_id;
      if (event.type === "element_started" && event.data.resumed && this.chunks.has(key)) this.chunks.get(key).textContent = "";
      return;
    }
    const id = event.element_id;
    const data = event.data;
    switch (event.type) {
      case "element_started":
        Object.assign(this.record(id), { inputs: data.inputs, startedAt: event.timestamp, resumed: data.resumed });
        if (this.chunks.has(id) && data.resumed) this.chunks.get(id).textContent = "";
        this.setState(id, "running");
        break;
      case "element_completed":
        Object.assign(this.record(id), { outputs: data.outputs, durationMs: data.duration_ms, cached: data.cached });
        this.setState(id, "completed");
        break;
      case "element_error":
        Object.assign(this.record(id), { error: data, durationMs: data.duration_ms, attempts: data.attempts });
        this.setState(id, stateOfError(data));
        break;
      case "element_skipped":
        this.record(id).reason = data.reason;
        this.setState(id, "skipped");
        break;
      case "flow_paused":
        this.record(id).waitingFor = data;
        this.setState(id, "paused");
        this.status.textContent = "paused";
        this.status.dataset.status = "paused";
        this.waiting.append(el("div", { class: "waiting", "data-element-id": id },
          el("strong", {}, `Waiting at ${id}: `), data.prompt || "(no prompt)",
          json({ input_schema: data.input_schema, resume: `POST ${data.resume_path}` })));
        break;
      case "flow_resumed":
        this.waiting.querySelector(`[data-element-id="${CSS.escape(id)}"]`)?.remove();
        this.status.textContent = "running";
        this.status.dataset.status = "running";
        break;
      case "flow_completed":
        this.status.textContent = data.status;
        this.status.dataset.status = data.status;
        this.waiting.replaceChildren();
        if (data.error) this.waiting.append(el("div", { class: "waiting" }, `${data.error.error_type}: ${data.error.message}`));
        break;
    }
  }

  async select(id) {
    this.selected = id;
    for (const [other, node] of this.nodes) node.setAttribute("aria-selected", String(other === id));
    const element = this.definition.elements[id];
    const seen = this.record(id);
    const facts = el("dl", {},
      el("dt", {}, "element"), el("dd", {}, `${element.name || id} (${id})`),
      el("dt", {}, "type"), el("dd", {}, element.type),
      el("dt", {}, "state"), el("dd", { id: "detail-state" }, seen.state || "pending"),
      el("dt", {}, "started"), el("dd", {}, seen.startedAt || ""),
      el("dt", {}, "duration"), el("dd", {}, seen.durationMs == null ? "" : `${seen.durationMs} ms`));
    const parts = [facts];
    if (seen.error) parts.push(el("h3", {}, "Error"), el("pre", { id: "detail-error" }, `${seen.error.error_type}: ${seen.error.message}`));
    if (seen.waitingFor) parts.push(el("h3", {}, "Waiting for"), json(seen.waitingFor));
    if (seen.inputs !== undefined) parts.push(el("h3", {}, "Inputs"), json(seen.inputs));
    if (seen.outputs !== undefined) parts.push(el("h3", {}, "Outputs"), json(seen.outputs));
    if (this.chunks.has(id)) parts.push(el("h3", {}, "LLM text"), el("pre", {}, this.chunks.get(id).textContent));
    this.details.replaceChildren(...parts);
  }
}

async function follow(flowId, view) {
  // Server-Sent Events read with fetch (EventSource cannot send the Authorization header);
  // after a dropped connection it goes on after the last seq it applied.
  let after = 0;
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      const response = await fetch(`${BASE}/flows/${encodeURIComponent(flowId)}/stream?after_seq=${after}`, { headers: authHeaders() });
      if (response.status === 401) throw new Unauthorized();
      if (!response.ok) return;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("\n");
          if (!data) continue;
          const event = JSON.parse(data);
          after = event.seq;
          view.apply(event);
          if (event.type === "flow_completed") return;
        }
      }
    } catch (error) {
      if (error instanceof Unauthorized) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function showRun(flowId) {
  heading.textContent = flowId;
  const { flow_definition: definition } = await api(`/flows/${encodeURIComponent(flowId)}/definition`);
  const view = new RunView(flowId, definition);
  await follow(flowId, view);
}

async function main() {
  const path = location.pathname.slice(BASE.length);
  const match = path.match(/^\/ui\/flows\/(.+)$/);
  try {
    if (match) await showRun(decodeURIComponent(match[1]));
    else await showRuns();
  } catch (error) {
    if (error instanceof Unauthorized) askForToken();
    else app.replaceChildren(el("p", { class: "error" }, String(error.message || error)));
  }
}

main();
