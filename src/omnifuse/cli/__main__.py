from omnifuse.cli.main import main

main()
