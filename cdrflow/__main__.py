from cdrflow.entry import main

main()
