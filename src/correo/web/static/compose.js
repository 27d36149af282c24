// Compose: new mail, reply, reply all, forward; plain or rich text; attachments by
// upload; drafts saved to the Drafts mailbox; sending by EmailSubmission (RFC 8621 §7).

import { who } from "./util.js";

const $ = (selector) => document.querySelector(selector);

function parseAddresses(text) {
  return text
    .split(/[,;]\s*/)
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => {
      const match = part.match(/^(.*?)\s*<([^>]+)>$/);
      return match ? { name: match[1].replace(/^"|"$/g, "") || null, email: match[2].trim() } : { name: null, email: part };
    });
}

function format(list) {
  return (list || []).map((a) => (a.name ? `${a.name} <${a.email}>` : a.email)).join(", ");
}

function quote(text) {
  return text
    .split("\n")
    .map((line) => "> " + line)
    .join("\n");
}

export class Composer {
  constructor(app) {
    this.app = app;
    this.dialog = $("#composer");
    this.form = $("#compose-form");
    this.rich = $("#rich-body");
    this.status = $("#compose-status");
    this.uploads = [];
    this.form.elements.rich.addEventListener("change", () => this.setRich(this.form.elements.rich.checked));
    this.form.elements.files.addEventListener("change", () => this.attach());
    for (const button of this.form.querySelectorAll("[data-cmd]")) {
      button.addEventListener("click", () => {
        this.rich.focus();
        document.execCommand(button.dataset.cmd);
      });
    }
    $("#discard").addEventListener("click", () => this.dialog.close());
    $("#save-draft").addEventListener("click", () => this.save(false));
    $("#send").addEventListener("click", () => this.save(true));
  }

  setRich(on) {
    const area = this.form.elements.body;
    if (on) this.rich.textContent = area.value;
    else area.value = this.rich.innerText;
    this.rich.hidden = !on;
    area.hidden = on;
    this.dialog.classList.toggle("rich-mode", on);
  }

  async identities() {
    if (!this.app.jmap.canSubmit) return [{ id: null, email: this.app.jmap.username, name: "" }];
    try {
      const { list } = await this.app.jmap.call("Identity/get", { ids: null });
      return list.length ? list : [{ id: null, email: this.app.jmap.username, name: "" }];
    } catch {
      return [{ id: null, email: this.app.jmap.username, name: "" }];
    }
  }

  async open(kind, email) {
    this.form.reset();
    this.setRich(false);
    this.uploads = [];
    this.inReplyTo = null;
    $("#attached").replaceChildren();
    this.status.textContent = "";
    this.ids = await this.identities();
    const from = this.form.elements.from;
    from.replaceChildren(...this.ids.map((identity, i) => Object.assign(document.createElement("option"), { value: String(i), textContent: identity.name ? `${identity.name} <${identity.email}>` : identity.email })));
    const f = this.form.elements;
    if (email && kind !== "new") {
      const subject = email.subject || "";
      const text = (email.textBody || []).map((p) => (email.bodyValues[p.partId] || {}).value || "").join("\n");
      const header = `On ${new Date(email.receivedAt).toLocaleString()}, ${who(email.from)} wrote:`;
      if (kind === "forward") {
        f.subject.value = /^fwd?:/i.test(subject) ? subject : `Fwd: ${subject}`;
        f.body.value = `\n\n---------- Forwarded message ----------\nFrom: ${format(email.from)}\nSubject: ${subject}\n\n${text}`;
      } else {
        f.subject.value = /^re:/i.test(subject) ? subject : `Re: ${subject}`;
        f.to.value = format(email.replyTo && email.replyTo.length ? email.replyTo : email.from);
        if (kind === "replyAll") {
          const me = new Set(this.ids.map((i) => i.email.toLowerCase()));
          const others = [...(email.to || []), ...(email.cc || [])].filter((a) => !me.has(a.email.toLowerCase()));
          f.cc.value = format(others);
        }
        f.body.value = `\n\n${header}\n${quote(text)}`;
        this.inReplyTo = email;
      }
    }
    this.dialog.showModal();
    (f.to.value ? f.body : f.to).focus();
    if (f.to.value) f.body.setSelectionRange(0, 0);
  }

  async attach() {
    for (const file of this.form.elements.files.files) {
      this.status.textContent = `Uploading ${file.name}…`;
      const blob = await this.app.jmap.upload(file);
      this.uploads.push({ blobId: blob.blobId, type: blob.type, name: file.name, size: blob.size, disposition: "attachment" });
      $("#attached").append(Object.assign(document.createElement("li"), { textContent: `${file.name} (${Math.ceil(blob.size / 1024)} KB)` }));
    }
    this.status.textContent = "";
    this.form.elements.files.value = "";
  }

  draft() {
    const f = this.form.elements;
    const identity = this.ids[Number(f.from.value) || 0];
    const richOn = f.rich.checked;
    const text = richOn ? this.rich.innerText : f.body.value;
    const mailbox = this.app.mailboxes.byRole("drafts") || this.app.mailboxes.byRole("inbox");
    const email = {
      mailboxIds: { [mailbox.id]: true },
      keywords: { $draft: true, $seen: true },
      from: [{ name: identity.name || null, email: identity.email }],
      to: parseAddresses(f.to.value),
      cc: parseAddresses(f.cc.value),
      bcc: parseAddresses(f.bcc.value),
      subject: f.subject.value,
      bodyValues: { text: { value: text } },
      textBody: [{ partId: "text", type: "text/plain" }],
    };
    if (richOn) {
      email.bodyValues.html = { value: this.rich.innerHTML };
      email.htmlBody = [{ partId: "html", type: "text/html" }];
    }
    if (this.uploads.length) email.attachments = this.uploads;
    if (this.inReplyTo && this.inReplyTo.messageId) {
      email.inReplyTo = this.inReplyTo.messageId;
      email.references = [...(this.inReplyTo.references || []), ...this.inReplyTo.messageId];
    }
    return { email, identity };
  }

  async save(send) {
    const { email, identity } = this.draft();
    if (send && !email.to.length && !email.cc.length && !email.bcc.length) {
      this.status.textContent = "Give at least one recipient.";
      return;
    }
    const jmap = this.app.jmap;
    const calls = [["Email/set", { create: { draft: email } }]];
    if (send) {
      if (!jmap.canSubmit) {
        this.status.textContent = "This server does not offer sending from the web yet.";
        return;
      }
      const sent = this.app.mailboxes.byRole("sent");
      const onSuccess = sent ? { "mailboxIds": { [sent.id]: true }, "keywords/$draft": null } : { "keywords/$draft": null };
      calls.push(["EmailSubmission/set", { create: { send: { identityId: identity.id, emailId: "#draft" } }, onSuccessUpdateEmail: { "#send": onSuccess } }]);
    }
    this.status.textContent = send ? "Sending…" : "Saving…";
    try {
      const responses = await jmap.batch(calls);
      for (const [name, result] of responses) {
        if (name === "error") throw new Error(result.type + (result.description ? `: ${result.description}` : ""));
        const refused = result.notCreated && Object.values(result.notCreated)[0];
        if (refused) throw new Error(refused.type + (refused.description ? `: ${refused.description}` : ""));
      }
      this.dialog.close();
      await this.app.pushed();
    } catch (error) {
      this.status.textContent = `${send ? "Not sent" : "Not saved"}: ${error.message}`;
    }
  }
}
