"""Stand-in for the get-pip.py that ansible-test downloads from ci-files.testing.ansible.com (unreachable here).

ansible-test runs it in each fresh sanity venv with the arguments of get-pip.py (a pip version, options): the pip
bundled with Python (ensurepip) installs the requested pip from the package index, which is reachable.
"""

from __future__ import annotations

import subprocess
import sys

GET_PIP_ONLY = ("--no-setuptools", "--no-wheel")

if __name__ == "__main__":
    # In a process of its own: ensurepip sets PIP_CONFIG_FILE=/dev/null in its process, which would hide the
    # machine's pip configuration (index, certificates) from the install below.
    subprocess.check_call([sys.executable, "-m", "ensurepip"], stdout=subprocess.DEVNULL)
    arguments = [argument for argument in sys.argv[1:] if argument not in GET_PIP_ONLY]
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *arguments])
