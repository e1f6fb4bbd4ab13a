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
for f in files:
    shutil.copy2(f, ebin)
shutil.copy2(nif, os.path.join(priv, "emmap_nif.so"))
with open(stamp, "w") as s:
    s.write(app_dir + "\n")
