from hvqcodec.cli import main

main(prog_name="hvqcodec")
