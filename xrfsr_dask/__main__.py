from xrfsr_dask.cli import main

main()
