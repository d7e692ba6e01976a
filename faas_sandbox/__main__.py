from faas_sandbox.cli import main

main()
