// A small JMAP client (RFC 8620/8621) for the webmail: the session's bearer token on
// every request, result references, uploads, and push by EventSource (RFC 8620 §7.3).

const CORE = "urn:ietf:params:jmap:core";
const MAIL = "urn:ietf:params:jmap:mail";
const SUBMISSION = "urn:ietf:params:jmap:submission";

export class JmapError extends Error {
  constructor(type, description) {
    super(`${type}${description ? ": " + description : ""}`);
    this.type = type;
  }
}

export class Jmap {
  static async connect() {
    const who = await fetch("/webmail/session", { credentials: "same-origin" });
    if (!who.ok) {
      location.assign("/");
      throw new Error("not logged in");
    }
    const info = await who.json();
    const client = new Jmap(info);
    const got = await fetch("/.well-known/jmap", { headers: client.headers() });
    client.session = await got.json();
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

  // Calls onChange(changed) at every state change; the cookie authenticates the stream.
  listen(onChange) {
    const url = this.session.eventSourceUrl
      .replace("{types}", "*")
      .replace("{closeafter}", "no")
      .replace("{ping}", "30");
    const source = new EventSource(url);
    source.addEventListener("state", (event) => onChange(JSON.parse(event.data)));
    return source;
  }

  async logout() {
    await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": this.bearer } });
    location.assign("/");
  }
}
