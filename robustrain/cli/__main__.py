from robustrain.cli.main import main

main()
