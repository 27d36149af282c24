// Small helpers shared by the webmail's modules.

export function who(list) {
  if (!list || !list.length) return "";
  return list.map((a) => a.name || a.email).join(", ");
}
