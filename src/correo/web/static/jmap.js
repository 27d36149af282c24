// A small JMAP client (RFC 8620/8621) for the webmail: the session's bearer token on
// every request, result references, uploads, and push by WebSocket (RFC 8887) or
// EventSource (RFC 8620 §7.3).

const CORE = "urn:ietf:params:jmap:core";
const MAIL = "urn:ietf:params:jmap:mail";
const SUBMISSION = "urn:ietf:params:jmap:submission";
const WEBSOCKET = "urn:ietf:params:jmap:websocket";

export class JmapError extends Error {
  constructor(type, description) {
    super(`${type}${description ? ": " + description : ""}`);
    this.type = type;
  }
}

export class Jmap {
  // The webmail's page carries what it needs to start in a <meta>; other pages ask.
  static async connect() {
    const boot = document.querySelector('meta[name="correo-boot"]');
    let info = boot && boot.content ? JSON.parse(boot.content) : null;
    if (!info) {
      const who = await fetch("/webmail/session", { credentials: "same-origin" });
      if (!who.ok) {
        location.assign("/");
        throw new Error("not logged in");
      }
      info = await who.json();
    }
    const client = new Jmap(info);
    client.session = info.session;
    client.inbox = info.inbox || null;
    client.accountId = client.session.primaryAccounts[MAIL];
    return client;
  }

  constructor(info) {
    this.username = info.username;
    this.bearer = info.bearer;
    this.dev = info.dev;
    this.admin = info.admin;
  }

  headers(extra = {}) {
    return { Authorization: "Bearer " + this.bearer, ...extra };
  }

  get canSubmit() {
    return SUBMISSION in this.session.capabilities;
  }

  // calls: [[name, args], ...]; the accountId is filled in; returns the responses
  async batch(calls, extra = []) {
    const using = [CORE, MAIL, ...extra];
    if (this.canSubmit) using.push(SUBMISSION);
    const body = {
      using,
      methodCalls: calls.map(([name, args], i) => [name, { accountId: this.accountId, ...args }, String(i)]),
    };
    const got = await fetch(this.session.apiUrl, {
      method: "POST",
      headers: this.headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
    });
    if (got.status === 401) {
      location.assign("/");
      throw new Error("session ended");
    }
    const data = await got.json();
    if (!got.ok) throw new JmapError(data.type || "error", data.detail);
    return data.methodResponses;
  }

  async call(name, args) {
    const [[answer, result]] = await this.batch([[name, args]]);
    if (answer === "error") throw new JmapError(result.type, result.description);
    return result;
  }

  downloadUrl(blobId, name, type) {
    return this.session.downloadUrl
      .replace("{accountId}", encodeURIComponent(this.accountId))
      .replace("{blobId}", encodeURIComponent(blobId))
      .replace("{name}", encodeURIComponent(name || "attachment"))
      .replace("{type}", encodeURIComponent(type || "application/octet-stream"));
  }

  async upload(file) {
    const url = this.session.uploadUrl.replace("{accountId}", encodeURIComponent(this.accountId));
    const got = await fetch(url, {
      method: "POST",
      headers: this.headers({ "Content-Type": file.type || "application/octet-stream" }),
      body: file,
    });
    if (!got.ok) throw new JmapError("uploadFailed", String(got.status));
    return got.json();
  }

  // Calls onChange(change) at every state change: over JMAP's WebSocket (RFC 8887
  // §4.3.5) where the session offers it, else (or when it cannot open) the EventSource
  // (RFC 8620 §7.3), which the cookie authenticates. A WebSocket carries changes, so it
  // needs the session's token too: a query parameter, since a browser sends no header.
  // document.body.dataset.push says which one listens.
  listen(onChange) {
    const ws = this.session.capabilities[WEBSOCKET];
    if (!ws || !ws.supportsPush || typeof WebSocket !== "function") return this.listenEvents(onChange);
    let socket;
    try {
      socket = new WebSocket(`${ws.url}?csrf=${encodeURIComponent(this.bearer)}`, "jmap");
    } catch {
      return this.listenEvents(onChange);
    }
    let opened = false;
    // a socket that neither opens nor fails (a proxy that holds it): the EventSource
    const wait = setTimeout(() => socket.close(), 10000);
    socket.addEventListener("open", () => {
      clearTimeout(wait);
      opened = true;
      document.body.dataset.push = "websocket";
      socket.send(JSON.stringify({ "@type": "WebSocketPushEnable", dataTypes: null, pushState: this.pushState || null }));
    });
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message["@type"] !== "StateChange") return;
      this.pushState = message.pushState;
      onChange(message);
    });
    socket.addEventListener("close", () => {
      clearTimeout(wait);
      if (!opened) return this.listenEvents(onChange);
      delete document.body.dataset.push;
      // the server restarted or the network moved: again in a moment, catching up
      setTimeout(() => this.listen(onChange), 2000);
    });
    return socket;
  }

  listenEvents(onChange) {
    const url = this.session.eventSourceUrl
      .replace("{types}", "*")
      .replace("{closeafter}", "no")
      .replace("{ping}", "30");
    const source = new EventSource(url);
    source.addEventListener("open", () => (document.body.dataset.push = "eventsource"));
    source.addEventListener("state", (event) => onChange(JSON.parse(event.data)));
    return source;
  }

  async logout() {
    await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": this.bearer } });
    location.assign("/");
  }
}
