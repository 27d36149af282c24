// A MIME message (RFC 5322, RFC 2045-2047, RFC 2231) built in the browser, so that a
// reply's In-Reply-To/References and any attachments travel as the reader wrote them:
// the page uploads it as a blob and files it with Email/import (RFC 8621 §4.8).

const encoder = new TextEncoder();

function base64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function lines76(text) {
  return text.replace(/.{1,76}/g, "$&\r\n");
}

// RFC 2047 §5: an encoded word per 30 characters, folded, when the text is not ASCII
function encodeWord(text) {
  if (/^[\x20-\x7e]*$/.test(text)) return text;
  const chunks = [];
  const chars = [...text];
  for (let i = 0; i < chars.length; i += 30) chunks.push(`=?UTF-8?B?${base64(encoder.encode(chars.slice(i, i + 30).join("")))}?=`);
  return chunks.join("\r\n ");
}

function displayName(name) {
  if (!/^[\x20-\x7e]*$/.test(name)) return encodeWord(name);
  return /[()<>[\]:;@\\,."]/.test(name) ? `"${name.replace(/["\\]/g, "\\$&")}"` : name;
}

export function addressList(list) {
  return list.map((a) => (a.name ? `${displayName(a.name)} <${a.email}>` : a.email)).join(",\r\n ");
}

function headerSafe(text) {
  return String(text).replace(/[\r\n]+/g, " ");
}

function boundary() {
  const random = crypto.getRandomValues(new Uint8Array(12));
  return "=_correo_" + [...random].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function textPart(type, text) {
  const normal = text.replace(/\r?\n/g, "\r\n");
  return `Content-Type: ${type}; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n${lines76(base64(encoder.encode(normal)))}`;
}

// RFC 2231 §4: a file name in any script
function fileName(name) {
  const ascii = /^[\x20-\x7e]*$/.test(name) && !/["\\]/.test(name);
  const encoded = encodeURIComponent(name).replace(/['()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
  return ascii ? `filename="${name}"` : `filename*=UTF-8''${encoded}`;
}

// fields: {from, to, cc, subject, inReplyTo, references}, text, html (or null),
// files: [{name, type, bytes}]; returns the message as a Blob
export function buildMessage(fields, text, html, files) {
  const domain = (fields.from[0].email.split("@")[1] || "localhost").replace(/[^A-Za-z0-9.-]/g, "");
  const id = `${crypto.randomUUID()}@${domain}`;
  const head = [
    `Date: ${new Date().toUTCString().replace("GMT", "+0000")}`,
    `From: ${addressList(fields.from)}`,
    fields.to.length ? `To: ${addressList(fields.to)}` : null,
    fields.cc.length ? `Cc: ${addressList(fields.cc)}` : null,
    `Subject: ${encodeWord(headerSafe(fields.subject))}`,
    `Message-ID: <${id}>`,
    fields.inReplyTo && fields.inReplyTo.length ? `In-Reply-To: ${fields.inReplyTo.map((m) => `<${headerSafe(m)}>`).join(" ")}` : null,
    fields.references && fields.references.length ? `References: ${fields.references.map((m) => `<${headerSafe(m)}>`).join("\r\n ")}` : null,
    "MIME-Version: 1.0",
  ].filter(Boolean);
  let body = textPart("text/plain", text);
  if (html !== null) {
    const alt = boundary();
    body = `Content-Type: multipart/alternative; boundary="${alt}"\r\n\r\n--${alt}\r\n${body}--${alt}\r\n${textPart("text/html", html)}--${alt}--\r\n`;
  }
  if (files.length) {
    const mixed = boundary();
    const parts = files.map((f) => `--${mixed}\r\nContent-Type: ${headerSafe(f.type || "application/octet-stream")}\r\nContent-Disposition: attachment; ${fileName(headerSafe(f.name))}\r\nContent-Transfer-Encoding: base64\r\n\r\n${lines76(base64(f.bytes))}`);
    body = `Content-Type: multipart/mixed; boundary="${mixed}"\r\n\r\n--${mixed}\r\n${body}${parts.join("")}--${mixed}--\r\n`;
  }
  return new Blob([head.join("\r\n") + "\r\n" + body], { type: "message/rfc822" });
}
