#!/usr/bin/env python3
"""The security page (man/vrot-security.7.scd) names, for every threat, the
tests that show the mitigation works: each named test must exist, so the
page cannot drift from the test suite unnoticed."""

import os
import re

import harness as H
from harness import check

PAGE = os.path.join(H.TOP, "man", "vrot-security.7.scd")


def defined_tests():
    names, files = set(), set()
    for sub in ("integration", "unit", "fuzz"):
        top = os.path.join(H.TOP, "tests", sub)
        for name in os.listdir(top):
            files.add(name)
            path = os.path.join(top, name)
            if name.endswith((".py", ".c")):
                with open(path, errors="replace") as f:
                    text = f.read()
                names |= set(re.findall(r"^def (test_\w+)", text, re.M))
                names |= set(re.findall(r"^static void (test_\w+)\(", text, re.M))
    return names, files


def test_security_page_names_real_tests():
    with open(PAGE) as f:
        page = f.read()
    names, files = defined_tests()
    cited = set(re.findall(r"\b(test_\w+)\b", page))
    cited_files = set(re.findall(r"\b((?:test_\w+\.py)|(?:test-[\w-]+\.c))\b", page))
    check(len(cited) >= 20, f"the page cites only {len(cited)} tests")
    missing = sorted(n for n in cited if n not in names and n + ".py" not in files)
    check(not missing, f"vrot-security(7) cites tests that do not exist: {missing}")
    missing = sorted(f for f in cited_files if f not in files)
    check(not missing, f"vrot-security(7) cites test files that do not exist: {missing}")


if __name__ == "__main__":
    H.main([test_security_page_names_real_tests])
