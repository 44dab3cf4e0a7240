from vroom_pipelines.cli import main

main()
