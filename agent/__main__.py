from cl_metadata.cli import main

raise SystemExit(main())
