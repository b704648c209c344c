#!/usr/bin/python3
"""
An independent check of TUF metadata with securesystemslib (Debian's
python3-securesystemslib), the library python-tuf builds on.

Input (stdin): {"files": {"<file name>": "<file text>", ...}} with names as a
TUF repository serves them: "N.root.json", "N.<role>.json", "timestamp.json".

For every key listed in a root ("keys") or in a delegation
("delegations.keys"), the key id is recomputed the way the specification
defines it: the hex SHA-256 of securesystemslib.formats.encode_canonical of
{keytype, scheme, keyval} (not securesystemslib's legacy keys API id, which
also hashes a "keyid_hash_algorithms" field the specification dropped). Every
signature is verified with securesystemslib.keys.verify_signature over
encode_canonical(signed), with the key as the authorizing metadata lists it:

- root N by its own root role, and for N > 1 by root N-1's root role;
- targets, snapshot, timestamp by the newest root given;
- a delegated role by the newest version of the role that delegates it (by
  name, or as one of its succinct hash bins, TAP 15).

A file with a duplicate object key is an error (JSON parsers disagree on
which value wins). Output (stdout): a JSON report (see `main`). Nothing here
trusts the ids or verdicts of the implementation under test.
"""
import hashlib
import json
import re
import sys

import securesystemslib
from securesystemslib import formats, keys as sslib_keys

TOP_LEVEL = ("root", "targets", "snapshot", "timestamp")
FILE_NAME = re.compile(r"^(?:(\d+)\.)?([A-Za-z0-9_][A-Za-z0-9_.-]*)\.json$")


def spec_keyid(key):
    body = {"keytype": key["keytype"], "scheme": key["scheme"], "keyval": key["keyval"]}
    return hashlib.sha256(formats.encode_canonical(body).encode("utf-8")).hexdigest()


def unique_keys(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate object key {k!r}")
        out[k] = v
    return out


def parse_name(name):
    m = FILE_NAME.match(name)
    if not m:
        raise ValueError(f"not a metadata file name: {name}")
    return (int(m.group(1)) if m.group(1) else None), m.group(2)


def verify(key, listed_keyid, signature, data):
    """(verified, error) for one signature with the key as listed."""
    key_dict = {"keyid": listed_keyid, "keytype": key["keytype"], "scheme": key["scheme"], "keyval": key["keyval"]}
    try:
        return bool(sslib_keys.verify_signature(key_dict, {"keyid": signature["keyid"], "sig": signature["sig"]}, data)), None
    except Exception as e:  # a malformed signature or key is a failed verification, with its reason
        return False, f"{type(e).__name__}: {e}"


def main():
    files = json.load(sys.stdin)["files"]
    report = {"securesystemslib": securesystemslib.__version__, "keyids": [], "signatures": [], "thresholds": [], "errors": []}
    docs = {}
    for name, text in files.items():
        version, role = parse_name(name)
        try:
            docs[name] = {"version": version, "role": role, "md": json.loads(text, object_pairs_hook=unique_keys)}
        except ValueError as e:
            report["errors"].append({"file": name, "error": f"cannot parse: {e}"})

    roots = sorted((d for d in docs.values() if d["role"] == "root"), key=lambda d: d["version"])
    roots_by_version = {d["version"]: d for d in roots}
    newest_root = roots[-1] if roots else None

    # Delegator of each delegated role: the newest version of a role whose delegations name it,
    # with the entry that names it; succinct hash bins (TAP 15) name "<prefix>-<hex>", the hex
    # part ceil(bit_length / 4) digits, for every bin number below 2 ** bit_length.
    delegators = {}

    def claim(role_name, d, role_def):
        best = delegators.get(role_name)
        if best is None or (best[0]["version"] or 0) < (d["version"] or 0):
            delegators[role_name] = (d, role_def)

    for name, d in docs.items():
        if d["md"]["signed"].get("_type") != "targets":
            continue
        delegations = d["md"]["signed"].get("delegations") or {}
        for r in delegations.get("roles", []):
            claim(r["name"], d, r)
        succinct = delegations.get("succinct_roles")
        if succinct:
            width = (succinct["bit_length"] + 3) // 4
            for i in range(2 ** succinct["bit_length"]):
                claim(f"{succinct['name_prefix']}-{i:0{width}x}", d, succinct)

    for name, d in sorted(docs.items()):
        signed = d["md"]["signed"]
        listed = dict(signed.get("keys") or {}) if d["role"] == "root" else {}
        listed.update((signed.get("delegations") or {}).get("keys") or {})
        for keyid, key in sorted(listed.items()):
            entry = {"file": name, "listed": keyid, "keytype": key["keytype"], "scheme": key["scheme"]}
            try:
                entry["computed"] = spec_keyid(key)
                entry["match"] = entry["computed"] == keyid
            except Exception as e:
                entry.update(match=False, error=f"{type(e).__name__}: {e}")
            report["keyids"].append(entry)

    for name, d in sorted(docs.items()):
        md, role, version = d["md"], d["role"], d["version"]
        try:
            data = formats.encode_canonical(md["signed"]).encode("utf-8")
        except Exception as e:
            report["errors"].append({"file": name, "error": f"cannot encode signed: {type(e).__name__}: {e}"})
            continue
        authorities = []  # (label, keys, role keyids, threshold)
        if role == "root":
            authorities.append((f"root v{version}", md["signed"]["keys"], md["signed"]["roles"]["root"]))
            prev = roots_by_version.get(version - 1)
            if prev is not None:
                authorities.append((f"root v{version - 1}", prev["md"]["signed"]["keys"], prev["md"]["signed"]["roles"]["root"]))
        elif role in TOP_LEVEL:
            if newest_root is None:
                report["errors"].append({"file": name, "error": "no root given"})
                continue
            rs = newest_root["md"]["signed"]
            authorities.append((f"root v{newest_root['version']}", rs["keys"], rs["roles"][role]))
        else:
            found = delegators.get(role)
            if found is None:
                report["errors"].append({"file": name, "error": f"no role given delegates {role}"})
                continue
            parent, r = found
            dl = parent["md"]["signed"]["delegations"]
            label = f"{parent['role']} v{parent['version']}" if parent["version"] else parent["role"]
            authorities.append((label, dl["keys"], r))

        for sig in md["signatures"]:
            entry = {"file": name, "keyid": sig["keyid"], "by": [], "verified": True}
            for label, key_map, role_def in authorities:
                if sig["keyid"] not in role_def["keyids"] or sig["keyid"] not in key_map:
                    continue
                key = key_map[sig["keyid"]]
                ok, err = verify(key, sig["keyid"], sig, data)
                entry["by"].append(label)
                entry["keytype"] = key["keytype"]
                entry["verified"] = entry["verified"] and ok
                if err:
                    entry["error"] = err
            if not entry["by"]:
                entry["verified"] = False
            report["signatures"].append(entry)

        for label, key_map, role_def in authorities:
            good = set()
            for sig in md["signatures"]:
                if sig["keyid"] in role_def["keyids"] and sig["keyid"] in key_map and sig["keyid"] not in good:
                    if verify(key_map[sig["keyid"]], sig["keyid"], sig, data)[0]:
                        good.add(sig["keyid"])
            report["thresholds"].append(
                {"file": name, "by": label, "threshold": role_def["threshold"], "valid": len(good), "met": len(good) >= role_def["threshold"]}
            )

    json.dump(report, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
