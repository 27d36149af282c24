// The admin page: users, aliases, domains and the queue, through correo's admin
// endpoints (webmail/admin/*), each change with the session's bearer token.

import { Jmap } from "./jmap.js";

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = Object.assign(document.createElement(tag), attrs);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

let jmap;

function say(text, bad = false) {
  const status = $("#admin-status");
  status.textContent = text;
  status.classList.toggle("error", bad);
}

async function act(body) {
  const got = await fetch("/webmail/admin/action", {
    method: "POST",
    headers: jmap.headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body),
  });
  const answer = await got.json().catch(() => ({}));
  if (!got.ok) {
    say(answer.error || `HTTP ${got.status}`, true);
    return false;
  }
  say(`Done: ${body.action} ${answer.target}`);
  await load();
  return true;
}

function button(label, onclick, className = "") {
  return el("button", { type: "button", textContent: label, onclick, className });
}

async function load() {
  const got = await fetch("/webmail/admin/state", { headers: jmap.headers() });
  if (!got.ok) {
    say(got.status === 403 ? "This page is for administrators." : `HTTP ${got.status}`, true);
    return;
  }
  const state = await got.json();
  $("#users").replaceChildren(
    ...state.users.map((u) =>
      el(
        "tr",
        {},
        el("td", { textContent: u.address }),
        el("td", {}, el("input", { type: "checkbox", checked: u.admin, ariaLabel: `${u.address} is an administrator`, onchange: (e) => act({ action: "user.admin", address: u.address, on: e.target.checked }) })),
        el("td", {}, button("Delete", () => confirm(`Delete ${u.address}? Its mail is kept aside.`) && act({ action: "user.del", address: u.address }), "danger")),
      ),
    ),
  );
  $("#aliases").replaceChildren(
    ...state.aliases.map((a) => el("tr", {}, el("td", { textContent: a.alias }), el("td", { textContent: a.target }), el("td", {}, button("Delete", () => act({ action: "alias.del", alias: a.alias }), "danger")))),
  );
  $("#domains").replaceChildren(
    ...state.domains.map((d) =>
      el(
        "li",
        {},
        el("span", { textContent: d + " " }),
        button("DNS records", () => dns(d, false)),
        button("Check DNS", () => dns(d, true)),
        button("Rotate DKIM keys", () => confirm(`New DKIM keys for ${d}? Publish them before the old ones go.`) && act({ action: "dkim.rotate", domain: d }).then(() => dns(d, false))),
      ),
    ),
  );
  $("#queue").replaceChildren(
    ...(state.queue.length
      ? state.queue.map((q) =>
          el(
            "tr",
            {},
            el("td", { textContent: String(q.id) }),
            el("td", { textContent: q.sender || "<>" }),
            el("td", { textContent: q.recipients.map((r) => `${r.address} (${r.status}${r.error ? ": " + r.error : ""})`).join(", ") }),
            el("td", { textContent: `${Math.round(q.age / 60)} min` }),
            el("td", {}, button("Retry", () => act({ action: "queue.retry", id: q.id })), button("Delete", () => act({ action: "queue.delete", id: q.id }), "danger")),
          ),
        )
      : [el("tr", {}, el("td", { colSpan: 5, className: "muted", textContent: "The queue is empty." }))]),
  );
}

async function dns(domain, check) {
  const out = $("#dns");
  out.hidden = false;
  out.textContent = check ? "Asking the DNS…" : "";
  const got = await fetch(`/webmail/admin/dns?domain=${encodeURIComponent(domain)}${check ? "&check=1" : ""}`, { headers: jmap.headers() });
  const answer = await got.json();
  if (!got.ok) {
    out.textContent = answer.error || `HTTP ${got.status}`;
    return;
  }
  const mark = (r) => (r.ok === undefined ? "" : r.ok === true ? "ok      " : r.ok === false ? "WRONG   " : "check   ");
  out.textContent = answer.records.map((r) => `${mark(r)}${r.line}${r.found !== undefined ? `\n        found: ${r.found || "(nothing)"}` : ""}`).join("\n");
}

function form(selector, action) {
  const node = $(selector);
  node.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = Object.fromEntries(new FormData(node).entries());
    if (await act({ action, ...fields })) node.reset();
  });
}

async function start() {
  jmap = await Jmap.connect();
  $("#who").textContent = jmap.username;
  form("#user-form", "user.add");
  form("#alias-form", "alias.add");
  form("#domain-form", "domain.add");
  await load();
  document.body.classList.add("ready");
}

start().catch((error) => say(`The page could not start: ${error.message}`, true));
