"""Offline stand-in for the get-pip.py bootstrap script that ansible-test downloads.

ansible-test fetches get-pip.py from a host this network cannot reach. tools/sanity
installs this file where ansible-test caches that script. It bootstraps pip from the
interpreter's bundled wheel (ensurepip) and then lets that pip install the versions
ansible-test asked for, from the package index pip is configured to use.
"""

import ensurepip
import os
import subprocess
import sys

# ensurepip clears pip's configuration variables from os.environ; keep the caller's
# environment (certificates, index settings) for the real install.
environment = dict(os.environ)
ensurepip.bootstrap(upgrade=True)
arguments = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + arguments, env=environment))
