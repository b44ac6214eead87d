from graftmatch.interfaces.cli import main

main()
