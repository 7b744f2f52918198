from services.indexer.server import main

if __name__ == "__main__":
    main()
