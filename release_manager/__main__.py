from release_manager.cli import main

main()
