// The visit plan, shared by the kiosk and the booking page: a life event and its yes/no answers
// become the procedures the resident will be helped with, and the queue those wait in (the
// server's routing rule, so both screens tell the resident what the server will do).

/** A life event's name as residents read it ("certificates" is "certificates only"). */
export function eventName(le) {
  if (le.id === "certificates") return { ja: "証明書のみ", en: "Certificates only" };
  return le.name;
}

/** The visit plan: the life event's procedures plus each answer's yes/no list, without repeats. */
export function visitPlan(le, answers) {
  const plan = [];
  const add = (codes) => (codes || []).forEach((c) => { if (!plan.includes(c)) plan.push(c); });
  add(le.procedures);
  for (const q of le.questions || []) {
    if (answers[q.id] === true) add(q.yes);
    else if (answers[q.id] === false) add(q.no);
  }
  return plan;
}

/** The queue a visit plan waits in: the first of the catalog's queues that handles all of its
 *  procedures; null when none does (or the plan is empty). */
export function routeQueue(catalog, plan) {
  if (!plan.length) return null;
  const q = (catalog?.queues || []).find((q) => plan.every((p) => (q.procedures || []).includes(p)));
  return q ? q.id : null;
}
