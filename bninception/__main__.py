from bninception.cli import main

raise SystemExit(main())
