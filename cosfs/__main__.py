from cosfs.cli import main

raise SystemExit(main())
