// The webmail: mailboxes, a virtual message list, the reader, and push updates.
// Everything goes through JMAP (jmap.js); mail HTML is only ever shown in a sandboxed
// frame the server filled with sanitized markup (webapp.py).

import { Jmap } from "./jmap.js";
import { full, who } from "./util.js";

const ROW = 64; // px per row of the message list
const PAGE = 100; // messages asked for at once
const LIST_PROPS = ["id", "threadId", "mailboxIds", "keywords", "from", "subject", "receivedAt", "preview", "hasAttachment"];
const THREAD_SHOWN = 50; // messages of a conversation shown at once
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
    this.take(list);
  }

  take(list) {
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

// The list by thread (Email/query collapseThreads): one row per thread, its newest
// message; an expanded thread shows its other messages below it. Only the rows on screen
// are in the document; pages of PAGE are asked for by position as they come into view.
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
    this.threads = new Map(); // threadId -> [emailId, ...], oldest first
    this.expanded = new Map(); // threadId -> ids shown under the thread's row
    this.pages = new Map(); // page start -> promise
    this.generation = (this.generation || 0) + 1;
  }

  // Keys act on the list as drawn: while it is being read again they wait for it
  // (`settled`), else a key pressed just after a push would find no rows.
  load(filter, withMailboxes = false) {
    this.reset(filter);
    this.scroller.scrollTop = 0;
    return this.track(this.fetch(0, withMailboxes).then(() => this.render()));
  }

  track(task) {
    this.settled = task.catch(() => {});
    return task;
  }

  // Re-read the pages on screen (after a push or a change), keeping the scroll position
  // and the threads that were open.
  refresh(withMailboxes = false) {
    return this.track(this.reread(withMailboxes));
  }

  async reread(withMailboxes) {
    const first = Math.floor(this.queryIndex(Math.floor(this.scroller.scrollTop / ROW)) / PAGE) * PAGE;
    const open = [...this.expanded.keys()];
    this.reset(this.filter);
    await this.fetch(first, withMailboxes);
    if (withMailboxes) this.app.mailboxes.render();
    for (const thread of open) if (this.threads.has(thread)) await this.expand(thread, false);
    this.render();
  }

  // One JMAP request per page: the query, the messages, their threads (for the counts),
  // and at start the mailboxes as well.
  fetch(start, withMailboxes = false) {
    const page = Math.floor(start / PAGE) * PAGE;
    if (this.pages.has(page)) return this.pages.get(page);
    const generation = this.generation;
    const task = (async () => {
      const calls = withMailboxes ? [["Mailbox/get", { ids: null }]] : [];
      const q = String(calls.length);
      calls.push(["Email/query", { filter: this.filter, sort: [{ property: "receivedAt", isAscending: false }], collapseThreads: true, position: page, limit: PAGE, calculateTotal: true }]);
      const g = String(calls.length);
      calls.push(["Email/get", { "#ids": { resultOf: q, name: "Email/query", path: "/ids" }, properties: LIST_PROPS }]);
      calls.push(["Thread/get", { "#ids": { resultOf: g, name: "Email/get", path: "/list/*/threadId" } }]);
      const responses = await this.app.jmap.batch(calls);
      if (withMailboxes) {
        const [kind, boxes] = responses.shift();
        if (kind !== "error") this.app.mailboxes.take(boxes.list);
      }
      if (generation !== this.generation) return;
      const [[kind, query], [, got], [, threads]] = responses;
      if (kind === "error") {
        this.status.textContent = query.type === "unsupportedFilter" ? "This search is not supported." : "Could not list messages.";
        return;
      }
      this.total = query.total ?? query.position + query.ids.length;
      query.ids.forEach((id, i) => (this.ids[query.position + i] = id));
      for (const email of got.list || []) this.emails.set(email.id, email);
      for (const thread of (threads && threads.list) || []) this.threads.set(thread.id, thread.emailIds);
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

  // Rows shown: the query's rows, with the open threads' other messages after theirs.
  get shownTotal() {
    let n = this.total;
    for (const ids of this.expanded.values()) n += ids.length;
    return n;
  }

  // What shown row `index` is: { id, query (index in the query), child (under a thread) }.
  at(index) {
    let offset = 0;
    for (const [thread, ids] of this.openThreads()) {
      const q = this.ids.indexOf(this.topOf(thread));
      if (index <= q + offset) break;
      if (index <= q + offset + ids.length) return { id: ids[index - q - offset - 1], query: q, child: true };
      offset += ids.length;
    }
    return { id: this.ids[index - offset], query: index - offset, child: false };
  }

  // The query index of shown row `index`.
  queryIndex(index) {
    return this.at(index).query;
  }

  // The shown index of email `id`, or -1.
  indexOf(id) {
    for (let i = 0, n = Math.min(this.shownTotal, this.ids.length + 1000); i < n; i++) if (this.at(i).id === id) return i;
    return -1;
  }

  // Open threads in list order, with the ids under them.
  openThreads() {
    return [...this.expanded.entries()].filter(([thread]) => this.ids.includes(this.topOf(thread))).sort((a, b) => this.ids.indexOf(this.topOf(a[0])) - this.ids.indexOf(this.topOf(b[0])));
  }

  topOf(thread) {
    const ids = this.threads.get(thread) || [];
    return ids.find((id) => this.ids.includes(id));
  }

  count(email) {
    return (this.threads.get(email.threadId) || [email.id]).length;
  }

  async expand(thread, render = true) {
    const ids = this.threads.get(thread);
    if (!ids || ids.length < 2 || this.expanded.has(thread)) return;
    const top = this.topOf(thread);
    const others = ids.filter((id) => id !== top).reverse(); // newest first, like the list
    const missing = others.filter((id) => !this.emails.has(id));
    if (missing.length) {
      const { list } = await this.app.jmap.call("Email/get", { ids: missing, properties: LIST_PROPS });
      for (const email of list) this.emails.set(email.id, email);
    }
    this.expanded.set(thread, others.filter((id) => this.emails.has(id)));
    if (render) this.render();
  }

  collapse(thread) {
    if (this.expanded.delete(thread)) this.render();
  }

  render() {
    const total = this.shownTotal;
    this.spacer.style.height = `${total * ROW}px`;
    this.status.textContent = this.total ? "" : "No messages";
    const top = this.scroller.scrollTop;
    const height = this.scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - 5);
    const last = Math.min(total, Math.ceil((top + height) / ROW) + 5);
    const shown = [];
    const drawn = new Map();
    let missing = false;
    for (let i = first; i < last; i++) {
      const where = this.at(i);
      const email = this.emails.get(where.id);
      if (!email) {
        missing = true;
        this.fetch(where.query).then(() => this.schedule());
        shown.push(el("div", { class: "row loading", style: `top:${i * ROW}px`, "aria-hidden": "true" }, "…"));
        continue;
      }
      shown.push(this.keptRow(email, i, where.child, drawn));
    }
    this.place(shown);
    this.drawnRows = drawn;
    if (!missing && shown.length && !this.drawn) {
      this.drawn = true;
      performance.mark("correo-list"); // the first screen (bench/webmail_bench.py)
    }
    return !missing;
  }

  // A row drawn before and unchanged is kept, not made again: a click whose button goes
  // down on a row and up after a redraw (a page of the list arriving, a push) still lands
  // on that row, and the page does less work per scroll.
  keptRow(email, index, child, drawn) {
    const k = email.keywords || {};
    const key = [email.id, index, child ? 1 : 0, k.$seen ? 1 : 0, k.$flagged ? 1 : 0,
      email.id === this.app.selected ? 1 : 0, child ? 1 : this.count(email),
      this.expanded.has(email.threadId) ? 1 : 0].join(" ");
    const node = (this.drawnRows && this.drawnRows.get(key)) || this.row(email, index, child);
    drawn.set(key, node);
    return node;
  }

  // Put ``shown`` in #rows in order, moving only what changed place (kept rows stay put).
  place(shown) {
    const wanted = new Set(shown);
    for (const node of [...this.rows.children]) if (!wanted.has(node)) node.remove();
    let at = this.rows.firstChild;
    for (const node of shown) {
      if (node === at) at = at.nextSibling;
      else this.rows.insertBefore(node, at);
    }
  }

  row(email, index, child) {
    const seen = email.keywords && email.keywords.$seen;
    const flagged = email.keywords && email.keywords.$flagged;
    const selected = email.id === this.app.selected;
    const count = child ? 1 : this.count(email);
    const open = this.expanded.has(email.threadId);
    return el(
      "div",
      {
        class: `row${seen ? "" : " unread"}${selected ? " selected" : ""}${child ? " child" : ""}`,
        role: "treeitem",
        "aria-level": child ? "2" : "1",
        "aria-expanded": count > 1 ? String(open) : null,
        "aria-selected": selected ? "true" : "false",
        "data-id": email.id,
        "data-index": String(index),
        "data-thread": email.threadId,
        style: `top:${index * ROW}px`,
        draggable: "true",
        ondragstart: (e) => {
          e.dataTransfer.setData("text/x-correo-email", email.id);
          e.dataTransfer.effectAllowed = "move";
        },
        onclick: () => this.app.select(email.id, index, true, !child),
      },
      el("span", { class: "flag", "aria-label": flagged ? "starred" : null }, flagged ? "★" : ""),
      el("span", { class: "from" }, who(email.from) || "(no sender)"),
      el("span", { class: "date" }, when(email.receivedAt)),
      el(
        "span",
        { class: "subject" },
        count > 1
          ? el(
              "button",
              {
                class: "thread-count",
                tabindex: "-1",
                "aria-label": `${count} messages, ${open ? "collapse" : "expand"}`,
                onclick: (e) => {
                  e.stopPropagation();
                  if (open) this.collapse(email.threadId);
                  else this.expand(email.threadId);
                },
              },
              String(count),
            )
          : null,
        (email.hasAttachment ? "📎 " : "") + (email.subject || "(no subject)"),
      ),
      el("span", { class: "preview" }, email.preview || ""),
    );
  }

  update(id, changes) {
    const email = this.emails.get(id);
    if (email) Object.assign(email, changes);
    this.render();
  }
}

// The reader shows the conversation: every message of the selected one's thread (the
// last THREAD_SHOWN), oldest first, the selected one in view.
class Reader {
  constructor(app) {
    this.app = app;
    this.node = $("#reader");
    this.asked = 0; // shows begun: an answer for an older one is dropped
  }

  clear() {
    this.asked += 1; // a message still loading is not shown after this
    this.email = null;
    document.body.classList.remove("reading");
    this.node.replaceChildren(el("p", { class: "muted empty" }, "Select a message."));
  }

  async show(id) {
    // the latest message asked for wins: an earlier, slower answer never replaces it
    const asked = ++this.asked;
    const jmap = this.app.jmap;
    const known = this.app.list.emails.get(id);
    let ids = known ? this.app.list.threads.get(known.threadId) : null;
    const read = { properties: READ_PROPS, fetchTextBodyValues: true, bodyProperties: ["partId", "blobId", "type", "name", "size", "disposition", "cid"] };
    let list;
    if (ids) {
      ({ list } = await jmap.call("Email/get", { ids: ids.slice(-THREAD_SHOWN), ...read }));
    } else {
      const answers = await jmap.batch([
        ["Email/get", { ids: [id], properties: ["threadId"] }],
        ["Thread/get", { "#ids": { resultOf: "0", name: "Email/get", path: "/list/*/threadId" } }],
      ]);
      const thread = (answers[1][1].list || [])[0];
      ids = thread ? thread.emailIds : [id];
      ({ list } = await jmap.call("Email/get", { ids: ids.slice(-THREAD_SHOWN), ...read }));
    }
    if (asked !== this.asked) return;
    const email = list.find((e) => e.id === id);
    if (!email) return this.clear();
    this.email = email;
    this.conversation = list;
    document.body.classList.add("reading");
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
    const parts = [actions, el("h2", { class: "subject" }, email.subject || "(no subject)")];
    if (list.length > 1) parts.push(el("p", { class: "muted thread-note" }, `${ids.length} messages in this conversation`));
    const shown = list.map((message) => this.message(message, message.id === id, list.length > 1));
    this.node.replaceChildren(...parts, ...shown);
    const current = this.node.querySelector(".message.current");
    if (list.length > 1 && current) current.scrollIntoView({ block: "nearest" });
    const unread = list.filter((m) => !m.keywords.$seen).map((m) => m.id);
    if (unread.length) this.app.markSeen(unread);
  }

  message(email, current, inThread) {
    const jmap = this.app.jmap;
    const html = (email.htmlBody || []).find((p) => p.type === "text/html");
    const text = (email.textBody || []).map((p) => (email.bodyValues[p.partId] || {}).value || "").join("\n");
    const fields = [
      ["From", full(email.from)],
      ["To", full(email.to)],
      ["Cc", full(email.cc)],
      ["Date", new Date(email.receivedAt).toLocaleString()],
    ].filter(([, v]) => v);
    const body = html ? this.frame(html.blobId, false) : el("pre", { class: "text-body" }, text);
    const attachments = (email.attachments || []).filter((p) => p.disposition !== "inline" || !p.cid);
    const parts = [
      inThread ? el("h3", { class: "message-from" }, who(email.from) || "(no sender)") : null,
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
    return el("section", { class: `message${current ? " current" : ""}`, "data-id": email.id, "aria-current": current ? "true" : null, "aria-label": `Message from ${who(email.from) || "unknown sender"}` }, ...parts.filter(Boolean));
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
    // The page names the inbox (else the last visit did): the mailboxes, the first page
    // of the list and its threads come in one JMAP request.
    const key = `correo.inbox.${this.jmap.accountId}`;
    const known = this.jmap.inbox || localStorage.getItem(key);
    if (known) {
      this.mailboxId = known;
      await this.list.load({ inMailbox: known }, true);
      this.mailboxes.render();
    } else await this.mailboxes.load();
    const inbox = this.mailboxes.byRole("inbox") || this.mailboxes.list[0];
    if (inbox && inbox.id !== known) {
      localStorage.setItem(key, inbox.id);
      await this.open(inbox.id);
    }
    $("#search").addEventListener("submit", (e) => {
      e.preventDefault();
      this.search($("#q").value.trim());
    });
    $("#compose-button").addEventListener("click", () => this.compose("new"));
    $("#menu").addEventListener("click", () => document.body.classList.toggle("show-nav"));
    document.addEventListener("keydown", (e) => this.key(e));
    document.body.classList.add("ready");
    // Not needed for the first screen: push, and the composer's code.
    setTimeout(() => {
      this.jmap.listen(() => this.pushed());
      import("./compose.js").catch(() => {});
    }, 0);
  }

  async pushed() {
    if (this.refreshing) {
      this.again = true;
      return;
    }
    this.refreshing = true;
    try {
      do {
        this.again = false;
        await this.list.refresh(true);
      } while (this.again);
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

  // Select shown row `index` (email `id`); show it (its conversation) when asked, and
  // open its thread in the list when asked.
  async select(id, index, show, expand = false) {
    this.selected = id;
    this.selectedIndex = index;
    this.list.render();
    const email = this.list.emails.get(id);
    if (expand && email) await this.list.expand(email.threadId);
    if (show) await this.reader.show(id);
  }

  step(delta) {
    const index = Math.max(0, Math.min(this.list.shownTotal - 1, (this.selectedIndex ?? -1) + delta));
    const id = this.list.at(index).id;
    if (!id) return;
    this.reveal(index);
    this.select(id, index, true);
  }

  reveal(index) {
    const top = index * ROW;
    const scroller = this.list.scroller;
    if (top < scroller.scrollTop) scroller.scrollTop = top;
    if (top + ROW > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = top + ROW - scroller.clientHeight;
  }

  // Right arrow: open the selected thread in the list; Left: close it (from a message
  // under it, go up to the thread's row first).
  async branch(open) {
    const email = this.selected && this.list.emails.get(this.selected);
    if (!email) return;
    const where = this.list.at(this.selectedIndex ?? -1);
    if (open) return this.list.expand(email.threadId);
    if (where.child) {
      const top = this.list.ids[where.query];
      const index = this.list.indexOf(top);
      this.reveal(index);
      return this.select(top, index, false);
    }
    this.list.collapse(email.threadId);
  }

  async markSeen(ids) {
    const update = Object.fromEntries(ids.map((id) => [id, { "keywords/$seen": true }]));
    await this.jmap.call("Email/set", { update });
    for (const id of ids) {
      const email = this.list.emails.get(id);
      if (email) email.keywords = { ...email.keywords, $seen: true };
    }
    this.list.render();
    this.mailboxes.load();
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
    await this.list.refresh(true);
  }

  // Archive (e): to the Archive mailbox, where there is one and this is not it.
  async archive() {
    const archive = this.mailboxes.byRole("archive");
    if (this.selected && archive && archive.id !== this.mailboxId) await this.move([this.selected], archive.id);
  }

  async remove() {
    const id = this.selected;
    if (!id) return;
    const trash = this.mailboxes.byRole("trash");
    if (trash && trash.id !== this.mailboxId) return this.move([id], trash.id);
    await this.jmap.call("Email/set", { destroy: [id] });
    this.selected = null;
    this.reader.clear();
    await this.list.refresh(true);
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

  // The composer's code is loaded when first needed (the first screen does without it).
  async compose(kind) {
    if (!this.composer) {
      const { Composer } = await import("./compose.js");
      this.composer = this.composer || new Composer(this);
    }
    this.composer.open(kind, kind === "new" ? null : this.reader.email);
  }

  key(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.closest("input, textarea, select, [contenteditable], dialog")) {
      if (event.key === "Escape" && target.closest("#search")) target.blur();
      return;
    }
    // moving in the list waits for a list being read again (see MessageList.track)
    const listed = (f) => () => Promise.resolve(this.list.settled).then(f);
    const actions = {
      j: listed(() => this.step(1)),
      ArrowDown: listed(() => this.step(1)),
      k: listed(() => this.step(-1)),
      ArrowUp: listed(() => this.step(-1)),
      Enter: listed(() => this.selected && this.select(this.selected, this.selectedIndex, true, true)),
      ArrowRight: listed(() => this.branch(true)),
      ArrowLeft: listed(() => this.branch(false)),
      l: listed(() => this.branch(true)),
      h: listed(() => this.branch(false)),
      e: () => this.archive(),
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
