// Compose: new mail, reply, reply all, forward; plain or rich text; attachments by
// upload; drafts saved to the Drafts mailbox; sending by EmailSubmission (RFC 8621 §7).

import { buildMessage } from "./mime.js";
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
    this.files = [];
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
    this.files = [];
    this.draftId = null;
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

  attach() {
    for (const file of this.form.elements.files.files) {
      this.files.push(file);
      $("#attached").append(Object.assign(document.createElement("li"), { textContent: `${file.name} (${Math.ceil(file.size / 1024)} KB)` }));
    }
    this.form.elements.files.value = "";
  }

  fields() {
    const f = this.form.elements;
    const identity = this.ids[Number(f.from.value) || 0];
    const richOn = f.rich.checked;
    const fields = {
      from: [{ name: identity.name || null, email: identity.email }],
      to: parseAddresses(f.to.value),
      cc: parseAddresses(f.cc.value),
      bcc: parseAddresses(f.bcc.value),
      subject: f.subject.value,
      inReplyTo: this.inReplyTo ? this.inReplyTo.messageId || [] : [],
      references: this.inReplyTo ? [...(this.inReplyTo.references || []), ...(this.inReplyTo.messageId || [])] : [],
    };
    return { fields, identity, text: richOn ? this.rich.innerText : f.body.value, html: richOn ? this.rich.innerHTML : null };
  }

  // The message as written, uploaded and filed in Drafts (Email/import); its Email id.
  async store({ fields, text, html }) {
    const jmap = this.app.jmap;
    const files = await Promise.all(this.files.map(async (file) => ({ name: file.name, type: file.type, bytes: new Uint8Array(await file.arrayBuffer()) })));
    const blob = await jmap.upload(buildMessage(fields, text, html, files));
    const drafts = this.app.mailboxes.byRole("drafts") || this.app.mailboxes.byRole("inbox");
    const result = await jmap.call("Email/import", {
      emails: { draft: { blobId: blob.blobId, mailboxIds: { [drafts.id]: true }, keywords: { $draft: true, $seen: true } } },
    });
    const refused = result.notCreated && result.notCreated.draft;
    if (refused) throw new Error(refused.type + (refused.description ? `: ${refused.description}` : ""));
    const id = result.created.draft.id;
    if (this.draftId && this.draftId !== id) await jmap.call("Email/set", { destroy: [this.draftId] });
    this.draftId = id;
    return id;
  }

  async save(send) {
    const message = this.fields();
    const { fields, identity } = message;
    const recipients = [...fields.to, ...fields.cc, ...fields.bcc];
    if (send && !recipients.length) {
      this.status.textContent = "Give at least one recipient.";
      return;
    }
    const jmap = this.app.jmap;
    if (send && !jmap.canSubmit) {
      this.status.textContent = "This server does not offer sending from the web.";
      return;
    }
    this.status.textContent = send ? "Sending…" : "Saving…";
    try {
      const emailId = await this.store(message);
      if (send) {
        const sent = this.app.mailboxes.byRole("sent");
        const onSuccess = sent ? { mailboxIds: { [sent.id]: true }, "keywords/$draft": null } : { "keywords/$draft": null };
        const envelope = { mailFrom: { email: identity.email, parameters: null }, rcptTo: recipients.map((a) => ({ email: a.email, parameters: null })) };
        const result = await jmap.call("EmailSubmission/set", {
          create: { send: { identityId: identity.id, emailId, envelope } },
          onSuccessUpdateEmail: { "#send": onSuccess },
        });
        const refused = result.notCreated && result.notCreated.send;
        if (refused) throw new Error(refused.type + (refused.description ? `: ${refused.description}` : ""));
        this.draftId = null;
      }
      this.dialog.close();
      await this.app.pushed();
    } catch (error) {
      this.status.textContent = `${send ? "Not sent" : "Not saved"}: ${error.message}`;
    }
  }
}
