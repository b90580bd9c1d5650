from cdyb_jxc.cli import main

raise SystemExit(main())
