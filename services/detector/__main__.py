from services.detector.server import main

if __name__ == "__main__":
    main()
