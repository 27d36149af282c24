// Drives correo's JMAP server with jmap-jam (a client nobody here wrote): session,
// query, get with bodyValues, keywords, a move, an upload and a submission.
// Usage: node jmap_jam.mjs SESSION_URL BEARER_TOKEN SUBJECT RECIPIENT
// Prints one JSON line with what it saw; exits non-zero on any failure.
import JamClient from "jmap-jam";

const [sessionUrl, bearerToken, subject, recipient] = process.argv.slice(2);
const jam = new JamClient({ sessionUrl, bearerToken });
const accountId = await jam.getPrimaryAccount();
const seen = {};

const [{ list: boxes }] = await jam.api.Mailbox.get({ accountId, ids: null });
const inbox = boxes.find((b) => b.role === "inbox");
const [made] = await jam.api.Mailbox.set({ accountId, create: { a: { name: "JamArchive" } } });
const archive = made.created.a.id;

const [{ query, emails }] = await jam.requestMany((t) => {
  const query = t.Email.query({
    accountId,
    filter: { inMailbox: inbox.id, subject },
    sort: [{ property: "receivedAt", isAscending: false }],
  });
  const emails = t.Email.get({
    accountId,
    ids: query.$ref("/ids"),
    properties: ["id", "subject", "keywords", "mailboxIds", "textBody", "bodyValues"],
    fetchTextBodyValues: true,
  });
  return { query, emails };
});
const email = emails.list[0];
seen.subject = email.subject;
seen.body = email.bodyValues[email.textBody[0].partId].value;

await jam.api.Email.set({
  accountId,
  update: {
    [email.id]: { "keywords/$flagged": true, mailboxIds: { [archive]: true } },
  },
});
const [{ list: [moved] }] = await jam.api.Email.get({
  accountId,
  ids: [email.id],
  properties: ["keywords", "mailboxIds"],
});
seen.keywords = moved.keywords;
seen.inArchive = Boolean(moved.mailboxIds[archive]) && !moved.mailboxIds[inbox.id];

const upload = await jam.uploadBlob(accountId, new Blob(["an attachment\n"]));
seen.uploaded = upload.size;

const [{ list: identities }] = await jam.api.Identity.get({ accountId, ids: null });
const [draft] = await jam.api.Email.set({
  accountId,
  create: {
    d: {
      mailboxIds: { [inbox.id]: true },
      keywords: { $draft: true },
      from: [{ email: identities[0].email }],
      to: [{ email: recipient }],
      subject: `sent by jam ${subject}`,
      textBody: [{ partId: "1", type: "text/plain" }],
      bodyValues: { 1: { value: "Hello from jmap-jam.\n" } },
    },
  },
});
const [submitted] = await jam.api.EmailSubmission.set({
  accountId,
  create: { s: { identityId: identities[0].id, emailId: draft.created.d.id } },
  onSuccessDestroyEmail: ["#s"],
});
seen.submitted = submitted.created.s.undoStatus;
console.log(JSON.stringify(seen));
