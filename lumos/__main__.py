from lumos.cli import main

main()
