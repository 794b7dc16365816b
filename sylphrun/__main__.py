from sylphrun.cli import main

main()
