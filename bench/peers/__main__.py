"""``python -m bench.peers``: build (or locate) the reference collector; see bench/peers/build.py."""

import sys

from bench.peers.build import main

sys.exit(main())
