#!/usr/bin/env python3
"""Lays out a ready OTP application folder: APP_DIR/ebin (beams, .app) and
APP_DIR/priv (the NIF). Usage: assemble_app.py STAMP APP_DIR NIF FILE..."""
import os
import shutil
import sys

stamp, app_dir, nif, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
ebin = os.path.join(app_dir, "ebin")
priv = os.path.join(app_dir, "priv")
for d in (ebin, priv):
    os.makedirs(d, exist_ok=True)


def install(src, dest):
    """Copies src to dest by rename: a VM running from this folder keeps
    the old file (its inode), where an in-place copy would rewrite the
    pages of a loaded NIF under it and crash it (SIGSEGV/SIGBUS)."""
    tmp = dest + ".tmp"
    shutil.copy2(src, tmp)
    os.replace(tmp, dest)


for f in files:
    install(f, os.path.join(ebin, os.path.basename(f)))
install(nif, os.path.join(priv, "emmap_nif.so"))
with open(stamp, "w") as s:
    s.write(app_dir + "\n")
