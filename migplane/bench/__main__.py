import sys

from migplane.bench.main import main

sys.exit(main())
