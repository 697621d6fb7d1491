from benchmarks._suite import main

raise SystemExit(main("quality"))
