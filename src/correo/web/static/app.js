// The webmail: mailboxes, a virtual message list, the reader, and push updates.
// Everything goes through JMAP (jmap.js); mail HTML is only ever shown in a sandboxed
// frame the server filled with sanitized markup (webapp.py).

import { Jmap } from "./jmap.js";
import { Composer } from "./compose.js";
import { full, who } from "./util.js";

const ROW = 64; // px per row of the message list
const PAGE = 100; // messages asked for at once
const LIST_PROPS = ["id", "threadId", "mailboxIds", "keywords", "from", "subject", "receivedAt", "preview", "hasAttachment"];
const READ_PROPS = [...LIST_PROPS, "to", "cc", "replyTo", "messageId", "references", "sentAt", "textBody", "htmlBody", "attachments", "bodyValues"];

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value; // CSSOM: allowed by the CSP
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}


function when(iso) {
  const date = new Date(iso);
  const now = new Date();
  if (date.toDateString() === now.toDateString()) return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return date.toLocaleDateString([], { day: "numeric", month: "short", year: date.getFullYear() === now.getFullYear() ? undefined : "numeric" });
}

class Mailboxes {
  constructor(app) {
    this.app = app;
    this.list = [];
    this.node = $("#mailboxes ul");
  }

  async load() {
    const { list } = await this.app.jmap.call("Mailbox/get", { ids: null });
    const order = { inbox: 0, drafts: 1, sent: 2, archive: 3, junk: 4, trash: 5 };
    list.sort((a, b) => (order[a.role] ?? 10) - (order[b.role] ?? 10) || (a.sortOrder ?? 0) - (b.sortOrder ?? 0) || a.name.localeCompare(b.name));
    this.list = list;
    this.render();
  }

  byRole(role) {
    return this.list.find((m) => m.role === role);
  }

  byId(id) {
    return this.list.find((m) => m.id === id);
  }

  render() {
    const current = this.app.mailboxId;
    this.node.replaceChildren(
      ...this.list.map((box) => {
        const unread = box.unreadEmails || 0;
        const item = el(
          "li",
          {
            class: "mailbox" + (box.id === current ? " current" : ""),
            "data-id": box.id,
            "data-role": box.role || "",
            tabindex: "0",
            role: "button",
            "aria-current": box.id === current ? "true" : null,
            "aria-label": `${box.name}${unread ? `, ${unread} unread` : ""}`,
            onclick: () => this.app.open(box.id),
            onkeydown: (e) => e.key === "Enter" && this.app.open(box.id),
            ondragover: (e) => {
              e.preventDefault();
              item.classList.add("drop");
            },
            ondragleave: () => item.classList.remove("drop"),
            ondrop: (e) => {
              e.preventDefault();
              item.classList.remove("drop");
              const id = e.dataTransfer.getData("text/x-correo-email");
              if (id) this.app.move([id], box.id);
            },
          },
          el("span", { class: "name" }, box.name),
          unread ? el("span", { class: "count" }, String(unread)) : null,
        );
        return item;
      }),
    );
  }
}

class MessageList {
  constructor(app) {
    this.app = app;
    this.scroller = $("#list");
    this.spacer = $("#spacer");
    this.rows = $("#rows");
    this.status = $("#list-status");
    this.reset(null);
    this.scroller.addEventListener("scroll", () => this.schedule());
    window.addEventListener("resize", () => this.schedule());
  }

  reset(filter) {
    this.filter = filter;
    this.total = 0;
    this.ids = [];
    this.emails = new Map();
    this.pages = new Map(); // page start -> promise
    this.generation = (this.generation || 0) + 1;
  }

  async load(filter) {
    this.reset(filter);
    this.scroller.scrollTop = 0;
    await this.fetch(0);
    this.render();
  }

  // Re-read the pages on screen (after a push or a change), keeping the scroll position.
  async refresh() {
    const first = Math.floor(this.scroller.scrollTop / ROW / PAGE) * PAGE;
    const keep = this.filter;
    this.reset(keep);
    await this.fetch(first);
    this.render();
  }

  fetch(start) {
    const page = Math.floor(start / PAGE) * PAGE;
    if (this.pages.has(page)) return this.pages.get(page);
    const generation = this.generation;
    const task = (async () => {
      const responses = await this.app.jmap.batch([
        ["Email/query", { filter: this.filter, sort: [{ property: "receivedAt", isAscending: false }], collapseThreads: true, position: page, limit: PAGE, calculateTotal: true }],
        ["Email/get", { "#ids": { resultOf: "0", name: "Email/query", path: "/ids" }, properties: LIST_PROPS }],
      ]);
      if (generation !== this.generation) return;
      const [[kind, query], [, got]] = responses;
      if (kind === "error") {
        this.status.textContent = query.type === "unsupportedFilter" ? "This search is not supported." : "Could not list messages.";
        return;
      }
      this.total = query.total ?? query.position + query.ids.length;
      query.ids.forEach((id, i) => (this.ids[query.position + i] = id));
      for (const email of got.list) this.emails.set(email.id, email);
    })();
    this.pages.set(page, task);
    return task;
  }

  schedule() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.render();
    });
  }

  render() {
    this.spacer.style.height = `${this.total * ROW}px`;
    this.status.textContent = this.total ? "" : "No messages";
    const top = this.scroller.scrollTop;
    const height = this.scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - 5);
    const last = Math.min(this.total, Math.ceil((top + height) / ROW) + 5);
    const shown = [];
    let missing = false;
    for (let i = first; i < last; i++) {
      const email = this.emails.get(this.ids[i]);
      if (!email) {
        missing = true;
        this.fetch(i).then(() => this.schedule());
        shown.push(el("div", { class: "row loading", style: `top:${i * ROW}px` }, "…"));
        continue;
      }
      shown.push(this.row(email, i));
    }
    this.rows.replaceChildren(...shown);
    return !missing;
  }

  row(email, index) {
    const seen = email.keywords && email.keywords.$seen;
    const flagged = email.keywords && email.keywords.$flagged;
    const selected = email.id === this.app.selected;
    return el(
      "div",
      {
        class: `row${seen ? "" : " unread"}${selected ? " selected" : ""}`,
        role: "option",
        "aria-selected": selected ? "true" : "false",
        "data-id": email.id,
        "data-index": String(index),
        style: `top:${index * ROW}px`,
        draggable: "true",
        ondragstart: (e) => {
          e.dataTransfer.setData("text/x-correo-email", email.id);
          e.dataTransfer.effectAllowed = "move";
        },
        onclick: () => this.app.select(email.id, index, true),
      },
      el("span", { class: "flag", "aria-label": flagged ? "starred" : null }, flagged ? "★" : ""),
      el("span", { class: "from" }, who(email.from) || "(no sender)"),
      el("span", { class: "date" }, when(email.receivedAt)),
      el("span", { class: "subject" }, (email.hasAttachment ? "📎 " : "") + (email.subject || "(no subject)")),
      el("span", { class: "preview" }, email.preview || ""),
    );
  }

  indexOf(id) {
    return this.ids.indexOf(id);
  }

  update(id, changes) {
    const email = this.emails.get(id);
    if (email) Object.assign(email, changes);
    this.render();
  }
}

class Reader {
  constructor(app) {
    this.app = app;
    this.node = $("#reader");
  }

  clear() {
    this.email = null;
    document.body.classList.remove("reading");
    this.node.replaceChildren(el("p", { class: "muted empty" }, "Select a message."));
  }

  async show(id) {
    const jmap = this.app.jmap;
    const { list } = await jmap.call("Email/get", {
      ids: [id],
      properties: READ_PROPS,
      fetchTextBodyValues: true,
      bodyProperties: ["partId", "blobId", "type", "name", "size", "disposition", "cid"],
    });
    const email = list[0];
    if (!email) return this.clear();
    this.email = email;
    document.body.classList.add("reading");
    const html = (email.htmlBody || []).find((p) => p.type === "text/html");
    const text = (email.textBody || []).map((p) => (email.bodyValues[p.partId] || {}).value || "").join("\n");
    const fields = [
      ["From", full(email.from)],
      ["To", full(email.to)],
      ["Cc", full(email.cc)],
      ["Date", new Date(email.receivedAt).toLocaleString()],
    ].filter(([, v]) => v);
    const actions = el(
      "div",
      { class: "actions", role: "toolbar", "aria-label": "Message actions" },
      el("button", { class: "back", onclick: () => this.clear(), "aria-label": "Back to the list" }, "←"),
      el("button", { onclick: () => this.app.compose("reply") }, "Reply"),
      el("button", { onclick: () => this.app.compose("replyAll") }, "Reply all"),
      el("button", { onclick: () => this.app.compose("forward") }, "Forward"),
      el("button", { onclick: () => this.app.toggle("$flagged"), "aria-pressed": email.keywords.$flagged ? "true" : "false" }, email.keywords.$flagged ? "Unstar" : "Star"),
      el("button", { onclick: () => this.app.toggle("$seen") }, "Mark unread"),
      el("button", { onclick: () => this.app.askMove() }, "Move"),
      el("button", { onclick: () => this.app.remove(), class: "danger" }, "Delete"),
    );
    const body = html ? this.frame(html.blobId, false) : el("pre", { class: "text-body" }, text);
    const attachments = (email.attachments || []).filter((p) => p.disposition !== "inline" || !p.cid);
    const parts = [
      actions,
      el("h2", { class: "subject" }, email.subject || "(no subject)"),
      el("dl", { class: "fields" }, ...fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
      attachments.length
        ? el(
            "ul",
            { class: "attachments", "aria-label": "Attachments" },
            ...attachments.map((p) => el("li", {}, el("a", { href: jmap.downloadUrl(p.blobId, p.name, p.type), download: p.name || "attachment" }, `${p.name || "attachment"} (${Math.ceil(p.size / 1024)} KB)`))),
          )
        : null,
      body,
    ];
    this.node.replaceChildren(...parts.filter(Boolean));
    if (!email.keywords.$seen) this.app.setKeyword(email.id, "$seen", true);
  }

  frame(blobId, images) {
    const holder = el("div", { class: "html-body" });
    const frame = el("iframe", {
      sandbox: "allow-same-origin allow-popups allow-popups-to-escape-sandbox",
      referrerpolicy: "no-referrer",
      title: "Message content",
      src: `/webmail/html/${encodeURIComponent(blobId)}${images ? "?images=1" : ""}`,
    });
    frame.addEventListener("load", () => {
      const doc = frame.contentDocument;
      if (!doc) return;
      frame.style.height = `${Math.min(doc.documentElement.scrollHeight + 20, 20000)}px`;
      const blocked = doc.querySelector('meta[name="correo-blocked"]');
      const count = blocked ? Number(blocked.content) : 0;
      if (count > 0 && !images) {
        holder.prepend(
          el("p", { class: "images-note" }, `${count} remote image${count > 1 ? "s were" : " was"} not loaded. `, el("button", { class: "show-images", onclick: () => holder.replaceWith(this.frame(blobId, true)) }, "Show images")),
        );
      }
    });
    holder.append(frame);
    return holder;
  }
}

class App {
  async start() {
    this.jmap = await Jmap.connect();
    $("#who").textContent = this.jmap.username;
    $("#admin-link").hidden = !this.jmap.admin;
    $("#logout").addEventListener("click", () => this.jmap.logout());
    this.mailboxes = new Mailboxes(this);
    this.list = new MessageList(this);
    this.reader = new Reader(this);
    this.composer = new Composer(this);
    // The inbox's id from the last visit lets the list load while the mailboxes do.
    const remembered = localStorage.getItem(`correo.inbox.${this.jmap.accountId}`);
    const boxes = this.mailboxes.load();
    if (remembered) {
      this.mailboxId = remembered;
      await Promise.all([boxes, this.list.load({ inMailbox: remembered })]);
    } else {
      await boxes;
    }
    const inbox = this.mailboxes.byRole("inbox") || this.mailboxes.list[0];
    localStorage.setItem(`correo.inbox.${this.jmap.accountId}`, inbox.id);
    if (inbox.id !== remembered) await this.open(inbox.id);
    else this.mailboxes.render();
    $("#search").addEventListener("submit", (e) => {
      e.preventDefault();
      this.search($("#q").value.trim());
    });
    $("#compose-button").addEventListener("click", () => this.compose("new"));
    $("#menu").addEventListener("click", () => document.body.classList.toggle("show-nav"));
    document.addEventListener("keydown", (e) => this.key(e));
    this.jmap.listen(() => this.pushed());
    document.body.classList.add("ready");
  }

  async pushed() {
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      await this.mailboxes.load();
      await this.list.refresh();
    } finally {
      this.refreshing = false;
    }
  }

  async open(mailboxId) {
    this.mailboxId = mailboxId;
    this.query = "";
    $("#q").value = "";
    document.body.classList.remove("show-nav");
    this.mailboxes.render();
    this.reader.clear();
    this.selected = null;
    await this.list.load({ inMailbox: mailboxId });
  }

  async search(text) {
    if (!text) return this.open(this.mailboxId);
    this.reader.clear();
    try {
      await this.jmap.call("Email/query", { filter: { text }, limit: 1 });
      await this.list.load({ text });
    } catch {
      // servers without full-text search: sender and subject
      await this.list.load({ operator: "OR", conditions: [{ from: text }, { subject: text }, { to: text }] });
    }
  }

  async select(id, index, show) {
    this.selected = id;
    this.selectedIndex = index;
    this.list.render();
    if (show) await this.reader.show(id);
  }

  step(delta) {
    const index = Math.max(0, Math.min(this.list.total - 1, (this.selectedIndex ?? -1) + delta));
    const id = this.list.ids[index];
    if (!id) return;
    const top = index * ROW;
    const scroller = this.list.scroller;
    if (top < scroller.scrollTop) scroller.scrollTop = top;
    if (top + ROW > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = top + ROW - scroller.clientHeight;
    this.select(id, index, true);
  }

  async setKeyword(id, keyword, on) {
    const email = this.list.emails.get(id) || (this.reader.email && this.reader.email.id === id ? this.reader.email : null);
    const keywords = { ...(email ? email.keywords : {}) };
    if (on) keywords[keyword] = true;
    else delete keywords[keyword];
    await this.jmap.call("Email/set", { update: { [id]: { [`keywords/${keyword}`]: on ? true : null } } });
    this.list.update(id, { keywords });
    if (this.reader.email && this.reader.email.id === id) this.reader.email.keywords = keywords;
    this.mailboxes.load();
  }

  async toggle(keyword) {
    const id = this.selected;
    if (!id) return;
    const email = this.list.emails.get(id) || this.reader.email;
    const on = !(email && email.keywords[keyword]);
    await this.setKeyword(id, keyword, on);
    if (keyword === "$flagged" && this.reader.email) this.reader.show(id);
  }

  async move(ids, mailboxId) {
    const update = Object.fromEntries(ids.map((id) => [id, { mailboxIds: { [mailboxId]: true } }]));
    const result = await this.jmap.call("Email/set", { update });
    if (result.notUpdated && Object.keys(result.notUpdated).length) throw new Error("move refused");
    if (ids.includes(this.selected)) {
      this.selected = null;
      this.reader.clear();
    }
    await this.mailboxes.load();
    await this.list.refresh();
  }

  async remove() {
    const id = this.selected;
    if (!id) return;
    const trash = this.mailboxes.byRole("trash");
    if (trash && trash.id !== this.mailboxId) return this.move([id], trash.id);
    await this.jmap.call("Email/set", { destroy: [id] });
    this.selected = null;
    this.reader.clear();
    await this.mailboxes.load();
    await this.list.refresh();
  }

  askMove() {
    const id = this.selected;
    if (!id) return;
    const dialog = $("#mover");
    const select = $("#mover-target");
    select.replaceChildren(...this.mailboxes.list.filter((m) => m.id !== this.mailboxId).map((m) => el("option", { value: m.id }, m.name)));
    dialog.onclose = () => {
      if (dialog.returnValue === "ok" && select.value) this.move([id], select.value);
    };
    dialog.showModal();
    select.focus();
  }

  compose(kind) {
    this.composer.open(kind, kind === "new" ? null : this.reader.email);
  }

  key(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.closest("input, textarea, select, [contenteditable], dialog")) {
      if (event.key === "Escape" && target.closest("#search")) target.blur();
      return;
    }
    const actions = {
      j: () => this.step(1),
      ArrowDown: () => this.step(1),
      k: () => this.step(-1),
      ArrowUp: () => this.step(-1),
      Enter: () => this.selected && this.reader.show(this.selected),
      s: () => this.toggle("$flagged"),
      u: () => this.toggle("$seen"),
      m: () => this.askMove(),
      "#": () => this.remove(),
      Delete: () => this.remove(),
      r: () => this.selected && this.compose("reply"),
      a: () => this.selected && this.compose("replyAll"),
      f: () => this.selected && this.compose("forward"),
      c: () => this.compose("new"),
      "/": () => $("#q").focus(),
    };
    const action = actions[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  }
}

window.correo = new App();
window.correo.start().catch((error) => {
  document.body.classList.add("failed");
  $("#list-status").textContent = `The webmail could not start: ${error.message}`;
});
