#!/usr/bin/env node
// Offline validation of the Kubernetes manifests under deploy/kubernetes (no cluster needed).
//
//   node tests/deploy/validate-k8s.mjs [DIR]      validate DIR (default deploy/kubernetes)
//   node tests/deploy/validate-k8s.mjs --self-test
//       copies the real manifests into temp dirs, breaks each in one known way and requires
//       validation to fail with the expected message (and the unbroken copy to pass), so the
//       check cannot silently pass.
//
// What is checked, per YAML document of every *.yaml file:
// - it parses (YAML 1.1, as Kubernetes' sigs.k8s.io/yaml reads it; duplicate keys are errors);
// - apiVersion/kind name a kubernetes-models class, which is instantiated and .validate()d
//   against the Kubernetes OpenAPI schema: errors name the file, line and JSON path;
// - no unknown fields: the schema validators of kubernetes-models do not refuse extra keys
//   (the OpenAPI schemas have no additionalProperties: false), so the document is validated a
//   second time through a Proxy that records every key the validator looks at; a key it never
//   read is not in the schema (a typo such as `capabilitiez` would otherwise pass and be
//   dropped by the API server);
// - Tapio's own rules: namespace tapio, resources + hardened securityContext on every
//   container, Services select a workload and target named ports that exist, the agent's
//   --controller address is a Service port, priorityClassName / ConfigMap references exist,
//   the profile ConfigMap equals deploy/profiles/default.yaml;
// - kustomization.yaml lists exactly the manifest files of the directory.
// Ends with "N passed, N failed" (one line per file, kustomization and self-test case).

import { readFileSync, readdirSync, writeFileSync, mkdtempSync, rmSync, cpSync, statSync } from "node:fs";
import { join, resolve, dirname, basename } from "node:path";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { parseAllDocuments, LineCounter } from "yaml";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const DEFAULT_DIR = join(root, "deploy/kubernetes");
const PROFILE = join(root, "deploy/profiles/default.yaml");
const NAMESPACE = "tapio";
const CLUSTER_SCOPED = new Set(["Namespace", "PriorityClass", "ClusterRole", "ClusterRoleBinding",
	"CustomResourceDefinition", "StorageClass", "PersistentVolume"]);
// Fields that exist in the Kubernetes schema but that kubernetes-models' compiled validators
// never read (their generator drops a property literally named "description"), so the
// unknown-field pass would flag them. kind + JSON pointer.
const UNREAD_BUT_KNOWN = new Set(["PriorityClass /description"]);
const WORKLOADS = new Set(["DaemonSet", "StatefulSet", "Deployment", "Job", "CronJob"]);

// ---- kubernetes-models lookup -------------------------------------------------------------

const modCache = new Map();
async function modelClass(apiVersion, kind) {
	if (typeof apiVersion !== "string" || typeof kind !== "string") return null;
	const spec = `kubernetes-models/${apiVersion}`; // "v1", "apps/v1", "scheduling.k8s.io/v1"
	if (!modCache.has(spec)) {
		try {
			modCache.set(spec, await import(spec));
		} catch {
			modCache.set(spec, null);
		}
	}
	const mod = modCache.get(spec);
	const cls = mod && mod[kind];
	return typeof cls === "function" && cls.kind === kind ? cls : null;
}

// ---- unknown-field detection ----------------------------------------------------------------

// Wraps a plain JSON value so that every property the validator reads (get, has, descriptor)
// or enumerates (maps such as labels, data, resources.limits) is recorded per object.
function tracked(value, seen) {
	const proxies = new WeakMap();
	const wrap = (v) => {
		if (v === null || typeof v !== "object") return v;
		if (proxies.has(v)) return proxies.get(v);
		seen.set(v, new Set());
		const mark = (k) => typeof k === "string" && seen.get(v).add(k);
		const p = new Proxy(v, {
			get(t, k, r) {
				mark(k);
				return wrap(Reflect.get(t, k, r));
			},
			has(t, k) {
				mark(k);
				return Reflect.has(t, k);
			},
			getOwnPropertyDescriptor(t, k) {
				mark(k);
				return Reflect.getOwnPropertyDescriptor(t, k);
			},
			ownKeys(t) {
				const keys = Reflect.ownKeys(t);
				keys.forEach(mark);
				return keys;
			},
		});
		proxies.set(v, p);
		return p;
	};
	return wrap(value);
}

function unknownFields(value, seen, path = []) {
	const out = [];
	if (value === null || typeof value !== "object") return out;
	const keys = seen.get(value);
	if (Array.isArray(value)) {
		value.forEach((x, i) => out.push(...unknownFields(x, seen, [...path, i])));
		return out;
	}
	for (const k of Object.keys(value)) {
		if (!keys || !keys.has(k)) out.push([...path, k]);
		else out.push(...unknownFields(value[k], seen, [...path, k]));
	}
	return out;
}

// ---- helpers ------------------------------------------------------------------------------

const ptr = (segs) => "/" + segs.join("/");
const segsOf = (instancePath) =>
	instancePath
		.split("/")
		.slice(1)
		.map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
		.map((s) => (/^\d+$/.test(s) ? Number(s) : s));

function lineOf(doc, lc, segs) {
	for (let n = segs.length; n >= 0; n--) {
		const node = n === 0 ? doc.contents : doc.getIn(segs.slice(0, n), true);
		if (node && node.range) return lc.linePos(node.range[0]).line;
	}
	return 0;
}

function podSpec(obj) {
	const s = obj.spec || {};
	if (obj.kind === "CronJob") return s.jobTemplate?.spec?.template?.spec;
	return s.template?.spec;
}

function podLabels(obj) {
	return obj.kind === "CronJob"
		? obj.spec?.jobTemplate?.spec?.template?.metadata?.labels || {}
		: obj.spec?.template?.metadata?.labels || {};
}

// ---- validation of one directory --------------------------------------------------------------

export async function validateDir(dir, opts = {}) {
	const profilePath = opts.profile === undefined ? PROFILE : opts.profile;
	const results = []; // {name, errors: []}
	const objects = []; // {file, line, obj}
	let kustomization = null;
	const files = readdirSync(dir)
		.filter((f) => /\.ya?ml$/.test(f) && statSync(join(dir, f)).isFile())
		.sort();
	if (files.length === 0) results.push({ name: dir, errors: [`${dir}: no YAML files`] });

	for (const f of files) {
		const errors = [];
		const text = readFileSync(join(dir, f), "utf8");
		const lc = new LineCounter();
		const docs = parseAllDocuments(text, { version: "1.1", uniqueKeys: true, prettyErrors: true, lineCounter: lc });
		if (!Array.isArray(docs)) {
			errors.push(`${f}: not a YAML stream`);
			results.push({ name: f, errors });
			continue;
		}
		let count = 0;
		for (const [i, doc] of docs.entries()) {
			for (const e of doc.errors) errors.push(`${f}:${e.linePos?.[0]?.line ?? "?"}: YAML: ${e.message.split("\n")[0]}`);
			if (doc.errors.length) continue;
			const obj = doc.toJS({ maxAliasCount: 0 });
			if (obj === null || obj === undefined) continue;
			count++;
			const where = (segs) => `${f}:${lineOf(doc, lc, segs)}`;
			if (typeof obj !== "object" || Array.isArray(obj)) {
				errors.push(`${where([])}: document ${i + 1} is not a mapping`);
				continue;
			}
			const id = `${obj.kind}/${obj.metadata?.name ?? "?"}`;
			if (obj.kind === "Kustomization") {
				if (kustomization) errors.push(`${where([])}: a second Kustomization`);
				kustomization = { file: f, obj, where };
				continue;
			}
			const Cls = await modelClass(obj.apiVersion, obj.kind);
			if (!Cls) {
				errors.push(`${where(["kind"])}: ${id}: no kubernetes-models class for apiVersion '${obj.apiVersion}' kind '${obj.kind}'`);
				continue;
			}
			let schemaOk = true;
			try {
				new Cls(obj).validate();
			} catch (e) {
				schemaOk = false;
				const list = Array.isArray(e.errors) && e.errors.length ? e.errors : [{ instancePath: "", message: e.message }];
				for (const er of list) {
					let path = er.instancePath || "";
					if (er.keyword === "required") path += `/${er.params.missingProperty}`;
					const segs = segsOf(path);
					const detail = er.keyword === "required" ? "required field missing" : er.message;
					errors.push(`${where(segs)}: ${id}: ${path || "/"}: ${detail}`);
				}
			}
			if (schemaOk) {
				// second pass through the recording proxy: keys the schema never read are unknown
				const plain = JSON.parse(JSON.stringify(new Cls(obj).toJSON()));
				const seen = new WeakMap();
				try {
					Cls.prototype.validate.call(tracked(plain, seen));
				} catch (e) {
					errors.push(`${where([])}: ${id}: internal: tracked validation failed: ${e.message}`);
				}
				for (const segs of unknownFields(plain, seen))
					if (!UNREAD_BUT_KNOWN.has(`${obj.kind} ${ptr(segs)}`))
						errors.push(`${where(segs)}: ${id}: ${ptr(segs)}: unknown field '${segs[segs.length - 1]}'`);
			}
			objects.push({ file: f, obj, where, id });
		}
		if (count === 0 && errors.length === 0) errors.push(`${f}: no documents`);
		results.push({ name: f, errors });
	}

	results.push({ name: "tapio rules", errors: policy(objects, profilePath) });

	const kerr = [];
	if (!kustomization) {
		kerr.push(`${dir}: no kustomization.yaml`);
	} else {
		const { file, obj, where } = kustomization;
		if (file !== "kustomization.yaml") kerr.push(`${file}: the Kustomization must be in kustomization.yaml`);
		const res = Array.isArray(obj.resources) ? obj.resources : [];
		if (!Array.isArray(obj.resources)) kerr.push(`${where(["resources"])}: resources must be a list`);
		const manifests = files.filter((x) => x !== file);
		for (const m of manifests)
			if (!res.includes(m)) kerr.push(`${where(["resources"])}: ${m} is not listed under resources`);
		res.forEach((r, i) => {
			if (!manifests.includes(r)) kerr.push(`${where(["resources", i])}: resources lists ${r}, which is not a manifest file here`);
			if (res.indexOf(r) !== i) kerr.push(`${where(["resources", i])}: ${r} listed twice`);
		});
		const images = new Set((obj.images || []).map((x) => x.name));
		for (const { obj: o, where: w, id } of objects) {
			const ps = podSpec(o);
			(ps?.containers || []).forEach((c) => {
				const name = String(c.image || "").split(":")[0];
				if (!images.has(name)) kerr.push(`${w([])}: ${id}: image ${name} has no images: entry in ${file}`);
			});
		}
	}
	results.push({ name: "kustomization", errors: kerr });
	return results;
}

// ---- Tapio rules --------------------------------------------------------------------------

function policy(objects, profilePath) {
	const errs = [];
	const byKind = (k) => objects.filter((o) => o.obj.kind === k);
	const names = (k) => new Set(byKind(k).map((o) => o.obj.metadata?.name));

	for (const { obj, where, id } of objects) {
		const ns = obj.metadata?.namespace;
		if (CLUSTER_SCOPED.has(obj.kind)) {
			if (ns !== undefined) errs.push(`${where(["metadata", "namespace"])}: ${id}: cluster-scoped kind has a namespace`);
		} else if (ns !== NAMESPACE) {
			errs.push(`${where(["metadata"])}: ${id}: metadata.namespace must be ${NAMESPACE}`);
		}
		if (!WORKLOADS.has(obj.kind)) continue;
		const ps = podSpec(obj) || {};
		const base = obj.kind === "CronJob" ? ["spec", "jobTemplate", "spec", "template", "spec"] : ["spec", "template", "spec"];
		if (ps.priorityClassName && !names("PriorityClass").has(ps.priorityClassName))
			errs.push(`${where([...base, "priorityClassName"])}: ${id}: PriorityClass ${ps.priorityClassName} is not defined here`);
		const volumes = ps.volumes || [];
		for (const [vi, v] of volumes.entries()) {
			const cms = [v.configMap, ...(v.projected?.sources || []).map((s) => s.configMap)].filter(Boolean);
			for (const cm of cms)
				if (!cm.optional && !names("ConfigMap").has(cm.name))
					errs.push(`${where([...base, "volumes", vi])}: ${id}: ConfigMap ${cm.name} is not defined here`);
		}
		for (const [ci, c] of (ps.containers || []).entries()) {
			const cp = [...base, "containers", ci];
			for (const r of ["requests", "limits"])
				for (const q of ["cpu", "memory"])
					if (!c.resources?.[r]?.[q]) errs.push(`${where([...cp, "resources"])}: ${id}: container ${c.name}: resources.${r}.${q} missing`);
			const sc = c.securityContext || {};
			if (sc.readOnlyRootFilesystem !== true) errs.push(`${where([...cp, "securityContext"])}: ${id}: container ${c.name}: readOnlyRootFilesystem must be true`);
			if (sc.allowPrivilegeEscalation !== false) errs.push(`${where([...cp, "securityContext"])}: ${id}: container ${c.name}: allowPrivilegeEscalation must be false`);
			if (sc.privileged === true) errs.push(`${where([...cp, "securityContext"])}: ${id}: container ${c.name}: must not be privileged`);
			if (!(sc.capabilities?.drop || []).includes("ALL")) errs.push(`${where([...cp, "securityContext"])}: ${id}: container ${c.name}: capabilities.drop must contain ALL`);
			const mounts = new Set((c.volumeMounts || []).map((m) => m.name));
			const claims = new Set((obj.spec?.volumeClaimTemplates || []).map((t) => t.metadata?.name));
			for (const m of mounts)
				if (!volumes.some((v) => v.name === m) && !claims.has(m))
					errs.push(`${where([...cp, "volumeMounts"])}: ${id}: container ${c.name}: volumeMount ${m} has no volume`);
			// --controller HOST:PORT must be a Service of these manifests
			const args = c.args || [];
			const ai = args.indexOf("--controller");
			if (ai >= 0) {
				const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?:(\d+)$/.exec(args[ai + 1] || "");
				const svc = m && byKind("Service").find((s) => s.obj.metadata?.name === m[1] && s.obj.metadata?.namespace === m[2]);
				if (!m) errs.push(`${where([...cp, "args", ai + 1])}: ${id}: --controller ${args[ai + 1]} is not SERVICE.NAMESPACE.svc:PORT`);
				else if (!svc) errs.push(`${where([...cp, "args", ai + 1])}: ${id}: --controller names Service ${m[1]}.${m[2]}, which is not defined here`);
				else if (!(svc.obj.spec?.ports || []).some((p) => p.port === Number(m[3])))
					errs.push(`${where([...cp, "args", ai + 1])}: ${id}: Service ${m[1]} has no port ${m[3]}`);
			}
		}
	}

	for (const { obj, where, id } of byKind("Service")) {
		const sel = obj.spec?.selector || {};
		const targets = objects.filter(
			(o) => WORKLOADS.has(o.obj.kind) && o.obj.metadata?.namespace === obj.metadata?.namespace &&
				Object.keys(sel).length > 0 && Object.entries(sel).every(([k, v]) => podLabels(o.obj)[k] === v));
		if (targets.length === 0) {
			errs.push(`${where(["spec", "selector"])}: ${id}: selector matches no workload here`);
			continue;
		}
		(obj.spec?.ports || []).forEach((p, i) => {
			const tp = p.targetPort ?? p.port;
			const ok = targets.some((t) =>
				(podSpec(t.obj)?.containers || []).some((c) =>
					(c.ports || []).some((cp) => (typeof tp === "string" ? cp.name === tp : cp.containerPort === tp))));
			if (!ok) errs.push(`${where(["spec", "ports", i, "targetPort"])}: ${id}: targetPort ${tp} is no container port of ${targets.map((t) => t.id).join(", ")}`);
		});
	}

	if (profilePath) {
		const cm = byKind("ConfigMap").find((o) => o.obj.metadata?.name === "tapio-profile");
		if (!cm) errs.push(`ConfigMap tapio-profile is missing`);
		else if (cm.obj.data?.["profile.yaml"] !== readFileSync(profilePath, "utf8"))
			errs.push(`${cm.where(["data", "profile.yaml"])}: ${cm.id}: data.profile.yaml differs from ${profilePath.replace(root + "/", "")}`);
	}
	return errs;
}

// ---- self-test ------------------------------------------------------------------------------

// Each case: file to edit, exact text to replace (must occur), replacement, expected message.
const CASES = [
	["wrong type", "agent-daemonset.yaml", "              readOnly: true", "              readOnly: \"yes\"", /must be boolean/],
	["unknown field", "agent-daemonset.yaml", "            capabilities:", "            capabilitiez:", /unknown field 'capabilitiez'/],
	["unknown top-level field", "controller-services.yaml", "spec:\n  type: ClusterIP", "spex:\n  type: ClusterIP", /unknown field 'spex'/],
	["missing required field", "controller-statefulset.yaml", "        - name: controller\n", "        - imageX: x\n", /containers\/0\/name: required field missing/],
	["unknown kind", "priorityclass.yaml", "kind: PriorityClass", "kind: PriorityKlass", /no kubernetes-models class/],
	["YAML syntax", "namespace.yaml", "  name: tapio\n", "  name: [tapio\n", /YAML/],
	["duplicate key", "namespace.yaml", "  name: tapio\n", "  name: tapio\n  name: tapio2\n", /YAML.*[Dd]uplicate|unique/],
	["bad quantity", "agent-daemonset.yaml", "              memory: 64Mi", "              memory: 64 megs", /limits\/memory/],
	["manifest not in kustomization", "kustomization.yaml", "  - priorityclass.yaml\n", "", /priorityclass\.yaml is not listed/],
	["kustomization lists a missing file", "kustomization.yaml", "  - namespace.yaml\n", "  - namespace.yaml\n  - gone.yaml\n", /gone\.yaml, which is not a manifest/],
	["service targets a missing port", "controller-services.yaml", "      targetPort: query", "      targetPort: querry", /targetPort querry is no container port/],
	["agent points at no service", "agent-daemonset.yaml", "tapio-controller.tapio.svc:7070", "tapio-ctl.tapio.svc:7070", /Service tapio-ctl\.tapio, which is not defined/],
	["profile drift", "controller-profile-configmap.yaml", "rtt_spike_ratio: 2.0", "rtt_spike_ratio: 3.0", /differs from deploy\/profiles\/default\.yaml/],
	["missing limit", "controller-statefulset.yaml", "              memory: 512Mi\n", "", /resources\.limits\.memory missing/],
	["writable root", "agent-daemonset.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", /readOnlyRootFilesystem must be true/],
];

async function selfTest(src) {
	const out = [];
	const scratch = mkdtempSync(join(tmpdir(), "tapio-k8s-selftest-"));
	try {
		const copy = (n) => {
			const d = join(scratch, n);
			cpSync(src, d, { recursive: true });
			return d;
		};
		const clean = await validateDir(copy("clean"));
		const cleanErrs = clean.flatMap((r) => r.errors);
		out.push({ name: "self-test: unbroken copy passes", errors: cleanErrs.map((e) => `unexpected: ${e}`) });
		for (const [i, [what, file, from, to, expect]] of CASES.entries()) {
			const d = copy(`case${i}`);
			const p = join(d, file);
			const text = readFileSync(p, "utf8");
			const errors = [];
			if (!text.includes(from)) {
				errors.push(`self-test case '${what}': '${from.trim()}' not found in ${file} (update the case)`);
			} else {
				writeFileSync(p, text.replace(from, to));
				const errs = (await validateDir(d)).flatMap((r) => r.errors);
				if (errs.length === 0) errors.push(`self-test case '${what}': validation PASSED a broken manifest`);
				else if (!errs.some((e) => expect.test(e)))
					errors.push(`self-test case '${what}': failed, but not with ${expect}: ${errs.join(" | ")}`);
				else console.log(`  ok: '${what}' refused: ${errs.find((e) => expect.test(e))}`);
			}
			out.push({ name: `self-test: ${what}`, errors });
		}
	} finally {
		rmSync(scratch, { recursive: true, force: true });
	}
	return out;
}

// ---- main -----------------------------------------------------------------------------------

async function main() {
	const argv = process.argv.slice(2);
	const self = argv.includes("--self-test");
	const dirArg = argv.find((a) => !a.startsWith("--"));
	const dir = resolve(dirArg || DEFAULT_DIR);
	const results = self ? await selfTest(dir) : await validateDir(dir);
	let passed = 0;
	let failed = 0;
	for (const r of results) {
		if (r.errors.length === 0) {
			passed++;
			console.log(`PASS ${r.name}`);
		} else {
			failed++;
			console.log(`FAIL ${r.name}`);
			for (const e of r.errors) console.log(`  ${e}`);
		}
	}
	console.log(`${passed} passed, ${failed} failed`);
	process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

main().catch((e) => {
	console.error(`validate-k8s: ${e.stack || e}`);
	process.exit(1);
});
