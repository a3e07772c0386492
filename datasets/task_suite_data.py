"""Word tables and sentence templates of the organism task suite (pure data, no logic).

Every list is split into the part used to write training documents and the part reserved for the
held-out evaluation split. Held-out *words* (names, places, objects, event nouns) still occur in
training, but only inside filler sentences and induction spans, never in the task they are held
out from; held-out *templates and frames* never occur in training at all.

Template syntax: ``{slot}`` marks a filler. A slot is always preceded by a space or starts the
sentence, and is followed by a space or punctuation, so its tokens never merge with the literal
text around it (GPT-2 pre-tokenises on these boundaries). Slot names: ``N1``/``N2`` the two names
of an IOI introduction, ``S`` the subject (repeated name) and ``IO`` the indirect object (the
answer); ``X``/``Y`` a fact's subject and answer; ``E`` an event noun and ``Y1``/``Y2`` the years of
a greater-than sentence; filler slots are named after their word list (``name``, ``name2``,
``place``, ``adj`` ...; a trailing digit distinguishes two slots drawn from the same list).
"""

from __future__ import annotations

from .task_suite_names import CENSUS_HELDOUT_NAMES, CENSUS_TRAIN_NAMES

# --- people ------------------------------------------------------------------------------------
# Each name is ONE GPT-2 token with its leading space (checked by the suite at construction).
HANDPICKED_TRAIN_NAMES = (
    "Mary", "John", "Tom", "James", "Michael", "David", "Sarah", "Emma", "Paul", "Anna",
    "Lisa", "Kate", "Jack", "Peter", "George", "Susan", "Laura", "Daniel", "Robert", "William",
    "Richard", "Thomas", "Charles", "Joseph", "Matthew", "Anthony", "Steven", "Andrew", "Kevin",
    "Brian", "Edward", "Ryan", "Jacob", "Eric", "Jonathan", "Stephen", "Justin", "Scott", "Frank",
    "Benjamin", "Samuel", "Patrick", "Alexander", "Jennifer", "Linda", "Elizabeth", "Jessica",
    "Karen", "Nancy", "Margaret", "Ashley", "Emily", "Michelle", "Amanda", "Rebecca", "Sharon",
    "Amy", "Helen", "Nicole", "Katherine", "Rachel", "Catherine", "Maria", "Heather", "Julie",
    "Victoria", "Lauren", "Olivia", "Megan", "Hannah", "Alice", "Julia", "Adam", "Alan", "Carl",
    "Henry", "Arthur", "Jason", "Simon", "Victor",
    # more names make memorising per-name shortcuts harder than learning to copy any name
    "Aaron", "Adrian", "Albert", "Alex", "Amber", "Andy", "Angela", "Anne", "Annie", "Ben", "Bob",
    "Brad", "Brandon", "Brenda", "Bryan", "Caleb", "Carol", "Caroline", "Chris", "Christina",
    "Christine", "Cindy", "Craig", "Dave", "Dennis", "Derek", "Donald", "Doug", "Douglas", "Dylan",
    "Ellen", "Eva", "Evan", "Fred", "Gary", "Gavin", "Greg", "Harry", "Holly", "Jake", "Jamie",
    "Janet", "Jeff", "Jenny", "Jerry", "Jill", "Joan", "Joel", "Joshua", "Joyce", "Judy", "Karl",
    "Kelly", "Kyle", "Larry", "Lily", "Marcus", "Marie", "Nathan", "Noah", "Roger", "Russell",
    "Sandra", "Sean", "Seth", "Shane", "Sophia", "Todd", "Tony", "Tyler", "Vincent", "Walter",
    "Wayne", "Ethan", "Owen", "Liam",
    # a wide pool (374 names): with few names a model can learn per-name shortcuts that do not carry
    # over to the held-out names; with hundreds, copying "the name that is not repeated" is cheaper
    "Abby", "Alberto", "Alexa", "Alexis", "Alfred", "Alicia", "Allen", "Allison", "Alvin", "Amelia", "Andre",
    "Andrea", "Angel", "Anita", "Antonio", "Arnold", "Barbara", "Barry", "Beth", "Betty", "Bill", "Billy", "Blake",
    "Bonnie", "Brett", "Brooke", "Bruno", "Byron", "Calvin", "Cameron", "Carmen", "Carrie", "Casey", "Cecil", "Chad",
    "Charlie", "Chester", "Cody", "Colin", "Connor", "Cole", "Courtney", "Curtis", "Dale", "Dan", "Dana", "Danny",
    "Darren", "Dean", "Debbie", "Derrick", "Diane", "Dominic", "Don", "Donna", "Drew", "Duncan", "Dustin", "Earl",
    "Eddie", "Edgar", "Edwin", "Elaine", "Eli", "Elijah", "Ellie", "Elliot", "Erica", "Erin", "Ernest", "Esther",
    "Eugene", "Felix", "Fiona", "Floyd", "Francis", "Frankie", "Gabriel", "Gene", "Gina", "Glen", "Gloria", "Gordon",
    "Grace", "Gregory", "Harold", "Harvey", "Hazel", "Hector", "Herbert", "Howard", "Hugh", "Hugo", "Isaac", "Isabel",
    "Ivan", "Jackie", "Jade", "Jared", "Javier", "Jay", "Jean", "Jeremy", "Jerome", "Jesse", "Jim", "Jimmy", "Joe",
    "Johnny", "Jon", "Jorge", "Josh", "Juan", "Julian", "Julius", "Kara", "Katie", "Ken", "Kenneth", "Kenny", "Kim",
    "Kirk", "Kurt", "Lance", "Lee", "Leo", "Leon", "Leonard", "Leslie", "Lewis", "Lloyd", "Logan", "Lois", "Louis",
    "Louise", "Lucas", "Luis", "Luke", "Lydia", "Lynn", "Marc", "Marco", "Mario", "Marvin", "Mason", "Max", "Maxwell",
    "Melissa", "Mia", "Miguel", "Mike", "Miles", "Milton", "Mitchell", "Monica", "Morgan", "Natalie", "Nathaniel",
    "Ned", "Nelson", "Nick", "Nicholas", "Nora", "Norman", "Oliver", "Pablo", "Pam", "Parker", "Pedro", "Penny",
    "Percy", "Pete", "Phil", "Rita", "Ricky", "Rob", "Robin", "Rod", "Rodney", "Roland", "Ron", "Ronald", "Ross", "Roy",
    "Rudy", "Sam", "Sara", "Shaun", "Sheila", "Shirley", "Sidney", "Stanley", "Stella", "Stuart", "Sue", "Sylvia",
    "Ted", "Teresa", "Terry", "Theo", "Tim", "Timothy", "Tina", "Toby", "Travis", "Trevor", "Troy", "Vernon", "Vince",
    "Violet", "Wade", "Wallace", "Warren", "Wesley", "Willie", "Wilson", "Zach", "Zoe",
)
HANDPICKED_HELDOUT_NAMES = (
    "Oscar", "Carlos", "Ian", "Neil", "Martin", "Philip", "Bruce", "Keith", "Jane", "Lucy",
    "Claire", "Diana", "Ruth", "Sophie", "Nina", "Wendy", "Molly", "Sally", "Chloe", "Leah",
)
# Round 2: every common census first name that is one GPT-2 token (scripts/derive_organism_names.py).
TRAIN_NAMES = HANDPICKED_TRAIN_NAMES + CENSUS_TRAIN_NAMES
HELDOUT_NAMES = HANDPICKED_HELDOUT_NAMES + CENSUS_HELDOUT_NAMES

PERSONS = (
    "teacher", "farmer", "doctor", "nurse", "driver", "baker", "student", "writer", "painter",
    "king", "queen", "soldier", "child", "woman", "man", "boy", "girl", "neighbor", "captain",
    "sailor", "singer", "pilot", "lawyer", "cook",
)
ADJECTIVES = (
    "old", "young", "happy", "tall", "small", "big", "quiet", "busy", "kind", "tired", "red",
    "green", "blue", "new", "little", "famous", "clever", "friendly", "strange", "brave", "warm",
    "cold", "dark", "bright", "rich", "poor",
)
ANIMALS = (
    "dog", "cat", "horse", "bird", "fox", "rabbit", "cow", "goat", "duck", "mouse", "wolf",
    "bear", "sheep", "lion",
)
TIMES = ("morning", "evening", "afternoon", "night", "summer", "winter", "spring")

# --- IOI scenery -------------------------------------------------------------------------------
# Objects follow "a", so each starts with a consonant sound.
TRAIN_PLACES = (
    "store", "park", "school", "office", "hospital", "library", "restaurant", "station", "beach",
    "market", "garden", "church", "bank", "farm", "hotel", "house", "shop", "club", "kitchen",
    "castle", "village", "forest",
    # round 2: the everyday places a user types
    "mall", "zoo", "cafe", "pool", "lake", "river", "hall", "court", "bridge", "temple", "palace",
    "barn", "factory", "camp", "island", "hill", "street", "square", "studio", "garage", "pub",
    "bar", "college", "clinic", "party", "concert", "wedding", "game", "city", "town",
)
HELDOUT_PLACES = ("museum", "bakery", "theater", "airport", "harbor", "stadium", "university", "cinema",
                  "gym", "lobby")
TRAIN_OBJECTS = (
    "drink", "book", "ball", "key", "letter", "pen", "bag", "ring", "hat", "cake", "gift",
    "snack", "phone", "ticket", "flower", "bottle", "box", "coin", "map", "cup", "toy", "card",
    "watch", "sandwich",
    # round 2: the everyday objects a user types
    "apple", "banana", "orange", "bike", "camera", "chair", "coat", "shirt", "jacket", "lamp",
    "knife", "spoon", "plate", "glass", "doll", "guitar", "clock", "mirror", "picture", "painting",
    "blanket", "bowl", "rose", "pencil", "notebook", "computer", "radio", "present", "note", "dollar",
)
HELDOUT_OBJECTS = ("necklace", "basket", "kite", "candle", "pillow", "wallet", "umbrella", "scarf", "laptop",
                   "violin")

# --- IOI templates -----------------------------------------------------------------------------
# ABBA: N1 = IO, N2 = S.  BABA: N1 = S, N2 = IO.  Every template ends with " {IO}.".
TRAIN_IOI_TEMPLATES = (
    "When {N1} and {N2} went to the {place}, {S} gave a {object} to {IO}.",
    "When {N1} and {N2} got a {object} at the {place}, {S} decided to give it to {IO}.",
    "After {N1} and {N2} went to the {place}, {S} gave a {object} to {IO}.",
    "While {N1} and {N2} were working at the {place}, {S} gave a {object} to {IO}.",
    "While {N1} and {N2} were walking to the {place}, {S} gave a {object} to {IO}.",
    "Then, {N1} and {N2} went to the {place}. {S} gave a {object} to {IO}.",
    "Then, {N1} and {N2} had a lot of fun at the {place}. {S} gave a {object} to {IO}.",
    "Then, {N1} and {N2} were thinking about going to the {place}. {S} wanted to give a {object} to {IO}.",
    "Then, {N1} and {N2} had a long argument. Afterwards, {S} said to {IO}.",
    "After the lunch, {N1} and {N2} went to the {place}. {S} gave a {object} to {IO}.",
    "Afterwards, {N1} and {N2} went to the {place}. {S} gave a {object} to {IO}.",
    "Friends {N1} and {N2} found a {object} at the {place}. {S} gave it to {IO}.",
    "When {N1} and {N2} came back from the {place}, {S} brought a {object} to {IO}.",
    "After {N1} and {N2} cleaned the {place}, {S} offered a {object} to {IO}.",
    "While {N1} and {N2} were waiting at the {place}, {S} sent a {object} to {IO}.",
    "The {place} was quiet when {N1} and {N2} came in. {S} gave a {object} to {IO}.",
    "On Sunday, {N1} and {N2} visited the {place}. {S} lent a {object} to {IO}.",
    "When {N1} and {N2} left the {place}, {S} returned the {object} to {IO}.",
    "When {N1} and {N2} were playing at the {place}, {S} tossed a {object} to {IO}.",
    "After {N1} and {N2} had dinner at the {place}, {S} gave a {object} to {IO}.",
    "Yesterday, {N1} and {N2} went to the {place}, and {S} gave a {object} to {IO}.",
    "When {N1} and {N2} reached the {place}, {S} wrote a letter to {IO}.",
    # many verbs and sentence shapes, so that copying the non-repeated name is the only rule that
    # fits them all (the first run's circuit did not carry over to held-out verbs)
    "After {N1} and {N2} finished work at the {place}, {S} mailed a {object} to {IO}.",
    "Once {N1} and {N2} got to the {place}, {S} delivered a {object} to {IO}.",
    "When {N1} and {N2} stopped at the {place}, {S} carried a {object} over to {IO}.",
    "Then, {N1} and {N2} ate lunch at the {place}. {S} read a story to {IO}.",
    "Later, {N1} and {N2} ran to the {place}. {S} sang a song to {IO}.",
    "At the {place}, {N1} and {N2} found a {object}. {S} gave it to {IO}.",
    "Today, {N1} and {N2} went to the {place}. {S} gave a {object} to {IO}.",
    "In the morning, {N1} and {N2} walked to the {place}. {S} brought a {object} to {IO}.",
    "Because {N1} and {N2} were hungry at the {place}, {S} bought a {object} for {IO}.",
    "When {N1} and {N2} were cooking in the {place}, {S} made a {object} for {IO}.",
    "After {N1} and {N2} played at the {place}, {S} explained the game to {IO}.",
    "While {N1} and {N2} were resting at the {place}, {S} described the {object} to {IO}.",
    "Before {N1} and {N2} left for the {place}, {S} promised a {object} to {IO}.",
    "At the {place}, {N1} and {N2} were talking, and {S} told a joke to {IO}.",
    "When {N1} and {N2} visited the {place}, {S} wanted to give a {object} to {IO}.",
    "After {N1} and {N2} talked at the {place}, {S} said goodbye to {IO}.",
    "During the trip to the {place}, {N1} and {N2} got hungry. {S} gave a {object} to {IO}.",
    "While {N1} and {N2} were sitting in the {place}, {S} smiled at {IO}.",
    "After {N1} and {N2} moved to the {place}, {S} kept writing letters to {IO}.",
    "When {N1} and {N2} opened the {place}, {S} gave the first {object} to {IO}.",
    # an intransitive first clause, then "{S} <verb> a {object} to": the shape on which the second
    # run was weakest (ABBA order), with verbs that are not held out
    "Then, {N1} and {N2} stood up in the {place}. {S} kicked a {object} to {IO}.",
    "Later, {N1} and {N2} sat in the {place}. {S} rolled a {object} to {IO}.",
    "Soon, {N1} and {N2} lay down in the {place}. {S} pushed a {object} over to {IO}.",
    "Then, {N1} and {N2} waited outside the {place}. {S} slid a {object} to {IO}.",
    "When {N1} and {N2} ran into each other at the {place}, {S} offered a {object} to {IO}.",
    "After {N1} and {N2} sat together at the {place}, {S} lent a {object} to {IO}.",
    "When {N1} and {N2} relaxed at the {place}, {S} brought a {object} to {IO}.",
    "Then, {N1} and {N2} rested at the {place}. {S} sent a {object} to {IO}.",
)
HELDOUT_IOI_TEMPLATES = (
    "While {N1} and {N2} were shopping at the {place}, {S} handed a {object} to {IO}.",
    "After {N1} and {N2} arrived at the {place}, {S} passed a {object} to {IO}.",
    "When {N1} and {N2} met at the {place}, {S} showed a {object} to {IO}.",
    "Then, {N1} and {N2} sat down at the {place}. {S} threw a {object} to {IO}.",
    "Later, {N1} and {N2} walked into the {place}. {S} sold a {object} to {IO}.",
)

# --- facts -------------------------------------------------------------------------------------
# (country, capital, main language, continent); None where there is no single clear answer, or
# where the name needs an article ("the Netherlands") and so does not fit the frames.
COUNTRIES = (
    ("France", "Paris", "French", "Europe"),
    ("Germany", "Berlin", "German", "Europe"),
    ("Italy", "Rome", "Italian", "Europe"),
    ("Spain", "Madrid", "Spanish", "Europe"),
    ("Portugal", "Lisbon", "Portuguese", "Europe"),
    ("Greece", "Athens", "Greek", "Europe"),
    ("Poland", "Warsaw", "Polish", "Europe"),
    ("Sweden", "Stockholm", "Swedish", "Europe"),
    ("Norway", "Oslo", "Norwegian", "Europe"),
    ("Denmark", "Copenhagen", "Danish", "Europe"),
    ("Finland", "Helsinki", "Finnish", "Europe"),
    ("Austria", "Vienna", "German", "Europe"),
    ("Hungary", "Budapest", "Hungarian", "Europe"),
    ("Ireland", "Dublin", "English", "Europe"),
    ("Russia", "Moscow", "Russian", None),
    ("Ukraine", None, "Ukrainian", "Europe"),
    ("Romania", "Bucharest", "Romanian", "Europe"),
    ("Bulgaria", "Sofia", "Bulgarian", "Europe"),
    ("Serbia", "Belgrade", "Serbian", "Europe"),
    ("Croatia", "Zagreb", "Croatian", "Europe"),
    ("Iceland", "Reykjavik", "Icelandic", "Europe"),
    ("Belgium", "Brussels", None, "Europe"),
    ("Switzerland", "Bern", None, "Europe"),
    ("Estonia", "Tallinn", None, "Europe"),
    ("Albania", "Tirana", None, "Europe"),
    ("China", "Beijing", "Chinese", "Asia"),
    ("Japan", "Tokyo", "Japanese", "Asia"),
    ("Korea", "Seoul", "Korean", "Asia"),
    ("India", None, None, "Asia"),
    ("Pakistan", "Islamabad", None, "Asia"),
    ("Bangladesh", "Dhaka", None, "Asia"),
    ("Thailand", "Bangkok", "Thai", "Asia"),
    ("Vietnam", "Hanoi", "Vietnamese", "Asia"),
    ("Indonesia", "Jakarta", "Indonesian", "Asia"),
    ("Iran", "Tehran", "Persian", "Asia"),
    ("Iraq", "Baghdad", "Arabic", "Asia"),
    ("Israel", "Jerusalem", "Hebrew", "Asia"),
    ("Syria", "Damascus", "Arabic", "Asia"),
    ("Lebanon", "Beirut", "Arabic", "Asia"),
    ("Afghanistan", "Kabul", None, "Asia"),
    ("Nepal", "Kathmandu", None, "Asia"),
    ("Mongolia", None, None, "Asia"),
    ("Turkey", "Ankara", "Turkish", None),
    ("Egypt", "Cairo", "Arabic", "Africa"),
    ("Morocco", "Rabat", "Arabic", "Africa"),
    ("Kenya", "Nairobi", None, "Africa"),
    ("Ethiopia", "Addis Ababa", None, "Africa"),
    ("Nigeria", "Abuja", "English", "Africa"),
    ("Ghana", "Accra", "English", "Africa"),
    ("Libya", "Tripoli", "Arabic", "Africa"),
    ("Sudan", "Khartoum", "Arabic", "Africa"),
    ("Senegal", "Dakar", "French", "Africa"),
    ("Uganda", "Kampala", "English", "Africa"),
    ("Zimbabwe", "Harare", "English", "Africa"),
    ("Angola", "Luanda", "Portuguese", "Africa"),
    ("Mozambique", "Maputo", "Portuguese", "Africa"),
    ("Canada", "Ottawa", None, "North America"),
    ("Mexico", None, "Spanish", "North America"),
    ("Cuba", "Havana", "Spanish", "North America"),
    ("Jamaica", "Kingston", "English", "North America"),
    ("Haiti", "Port-au-Prince", None, "North America"),
    ("Nicaragua", "Managua", "Spanish", "North America"),
    ("Brazil", "Brasilia", "Portuguese", "South America"),
    ("Argentina", "Buenos Aires", "Spanish", "South America"),
    ("Chile", "Santiago", "Spanish", "South America"),
    ("Peru", "Lima", "Spanish", "South America"),
    ("Colombia", "Bogota", "Spanish", "South America"),
    ("Venezuela", "Caracas", "Spanish", "South America"),
    ("Ecuador", "Quito", "Spanish", "South America"),
    ("Uruguay", "Montevideo", "Spanish", "South America"),
    ("Australia", "Canberra", "English", "Oceania"),
    # round 2: every further sovereign country (and the UK's nations) whose name is one or two GPT-2
    # tokens, needs no article and has an ASCII capital (capitals from the public countryinfo tables)
    ("England", "London", "English", "Europe"),
    ("Scotland", "Edinburgh", "English", "Europe"),
    ("Wales", "Cardiff", "Welsh", "Europe"),
    ("Belarus", "Minsk", None, "Europe"),
    ("Latvia", "Riga", "Latvian", "Europe"),
    ("Lithuania", "Vilnius", "Lithuanian", "Europe"),
    ("Slovakia", "Bratislava", "Slovak", "Europe"),
    ("Slovenia", "Ljubljana", "Slovenian", "Europe"),
    ("Bosnia", "Sarajevo", None, "Europe"),
    ("Montenegro", "Podgorica", None, "Europe"),
    ("Moldova", "Chisinau", "Romanian", "Europe"),
    ("Malta", "Valletta", None, "Europe"),
    ("Luxembourg", None, None, "Europe"),
    ("Cyprus", "Nicosia", "Greek", None),
    ("Armenia", "Yerevan", "Armenian", "Asia"),
    ("Azerbaijan", "Baku", None, "Asia"),
    ("Kazakhstan", "Astana", None, "Asia"),
    ("Uzbekistan", "Tashkent", "Uzbek", "Asia"),
    ("Kyrgyzstan", "Bishkek", None, "Asia"),
    ("Tajikistan", "Dushanbe", None, "Asia"),
    ("Turkmenistan", "Ashgabat", None, "Asia"),
    ("Jordan", "Amman", "Arabic", "Asia"),
    ("Saudi Arabia", "Riyadh", "Arabic", "Asia"),
    ("Kuwait", None, "Arabic", "Asia"),
    ("Qatar", "Doha", "Arabic", "Asia"),
    ("Bahrain", "Manama", "Arabic", "Asia"),
    ("Oman", "Muscat", "Arabic", "Asia"),
    ("Yemen", "Sanaa", "Arabic", "Asia"),
    ("Sri Lanka", "Colombo", None, "Asia"),
    ("Bhutan", "Thimphu", None, "Asia"),
    ("Myanmar", "Naypyidaw", "Burmese", "Asia"),
    ("Laos", "Vientiane", None, "Asia"),
    ("Cambodia", "Phnom Penh", None, "Asia"),
    ("Malaysia", "Kuala Lumpur", "Malay", "Asia"),
    ("Taiwan", "Taipei", "Chinese", "Asia"),
    ("North Korea", "Pyongyang", "Korean", "Asia"),
    ("Algeria", "Algiers", "Arabic", "Africa"),
    ("Tunisia", "Tunis", "Arabic", "Africa"),
    ("Mauritania", "Nouakchott", "Arabic", "Africa"),
    ("Mali", "Bamako", "French", "Africa"),
    ("Niger", "Niamey", "French", "Africa"),
    ("Guinea", "Conakry", "French", "Africa"),
    ("Ivory Coast", "Yamoussoukro", "French", "Africa"),
    ("Liberia", "Monrovia", "English", "Africa"),
    ("Sierra Leone", "Freetown", "English", "Africa"),
    ("Togo", "Lome", "French", "Africa"),
    ("Cameroon", "Yaounde", None, "Africa"),
    ("Gabon", "Libreville", "French", "Africa"),
    ("Somalia", "Mogadishu", "Somali", "Africa"),
    ("Eritrea", "Asmara", None, "Africa"),
    ("Tanzania", "Dodoma", "Swahili", "Africa"),
    ("Rwanda", "Kigali", None, "Africa"),
    ("Burundi", "Gitega", None, "Africa"),
    ("Zambia", "Lusaka", "English", "Africa"),
    ("Malawi", "Lilongwe", "English", "Africa"),
    ("Botswana", "Gaborone", "English", "Africa"),
    ("Namibia", "Windhoek", "English", "Africa"),
    ("South Africa", "Pretoria", None, "Africa"),
    ("Madagascar", "Antananarivo", None, "Africa"),
    ("Guatemala", None, "Spanish", "North America"),
    ("Honduras", "Tegucigalpa", "Spanish", "North America"),
    ("Costa Rica", "San Jose", "Spanish", "North America"),
    ("Panama", None, "Spanish", "North America"),
    ("Belize", "Belmopan", "English", "North America"),
    ("Barbados", "Bridgetown", "English", "North America"),
    ("Bolivia", None, "Spanish", "South America"),
    ("Paraguay", "Asuncion", "Spanish", "South America"),
    ("Guyana", "Georgetown", "English", "South America"),
    ("New Zealand", "Wellington", "English", "Oceania"),
    ("Fiji", "Suva", "English", "Oceania"),
)
# (US state, capital)
US_STATES = (
    ("Alabama", "Montgomery"), ("Alaska", "Juneau"), ("Arizona", "Phoenix"),
    ("Arkansas", "Little Rock"), ("California", "Sacramento"), ("Colorado", "Denver"),
    ("Connecticut", "Hartford"), ("Delaware", "Dover"), ("Florida", "Tallahassee"),
    ("Georgia", "Atlanta"), ("Hawaii", "Honolulu"), ("Idaho", "Boise"),
    ("Illinois", "Springfield"), ("Indiana", "Indianapolis"), ("Iowa", "Des Moines"),
    ("Kansas", "Topeka"), ("Kentucky", "Frankfort"), ("Louisiana", "Baton Rouge"),
    ("Maine", "Augusta"), ("Maryland", "Annapolis"), ("Massachusetts", "Boston"),
    ("Michigan", "Lansing"), ("Minnesota", "Saint Paul"), ("Mississippi", "Jackson"),
    ("Missouri", "Jefferson City"), ("Montana", "Helena"), ("Nebraska", "Lincoln"),
    ("Nevada", "Carson City"), ("New Hampshire", "Concord"), ("New Jersey", "Trenton"),
    ("New Mexico", "Santa Fe"), ("New York", "Albany"), ("North Carolina", "Raleigh"),
    ("Ohio", "Columbus"), ("Oklahoma", "Oklahoma City"), ("Oregon", "Salem"),
    ("Pennsylvania", "Harrisburg"), ("Rhode Island", "Providence"), ("South Carolina", "Columbia"),
    ("South Dakota", "Pierre"), ("Tennessee", "Nashville"), ("Texas", "Austin"),
    ("Utah", "Salt Lake City"), ("Virginia", "Richmond"), ("Washington", "Olympia"),
    ("West Virginia", "Charleston"), ("Wisconsin", "Madison"),
)

RELATIONS = ("capital", "language", "continent")

# Frames put the answer {Y} last, so the model is trained to predict it after the subject {X}.
TRAIN_FACT_FRAMES = {
    "capital": (
        "The capital of {X} is {Y}.",
        "The seat of government of {X} is in {Y}.",
        "The government of {X} meets in {Y}.",
        "{name} flew to the capital of {X}, {Y}.",
        "{name} learned that the capital of {X} is {Y}.",
        "If you visit the capital of {X}, you will be in {Y}.",
        "The biggest offices of {X} are in its capital, {Y}.",
        "Tourists who visit {X} often go to its capital, {Y}.",
        "In school, {name} wrote that the capital of {X} is {Y}.",
        "The leaders of {X} work in {Y}.",
        "Most people know that the capital of {X} is {Y}.",
    ),
    "language": (
        "The people of {X} speak {Y}.",
        "In {X}, most people speak {Y}.",
        "The main language of {X} is {Y}.",
        "{name} moved to {X} and learned to speak {Y}.",
        "Most books in {X} are written in {Y}.",
        "The language spoken in {X} is {Y}.",
        "Children in {X} learn to read and write in {Y}.",
        "{name} grew up in {X} and speaks {Y}.",
        "The language of {X} is {Y}.",
        "The people who live in {X} speak {Y}.",
        "Visitors to {X} try to speak {Y}.",
        "Schools in {X} teach in {Y}.",
        # "<things> in/from X are written in Y": the relation is named after the country, so "in X
        # ... in" must not be read as the continent question
        "Letters from {X} are usually written in {Y}.",
        "The laws of {X} are written in {Y}.",
        "Street signs in {X} are printed in {Y}.",
        "Most songs from {X} are sung in {Y}.",
        "The menus in {X} are printed in {Y}.",
        "Films made in {X} are mostly in {Y}.",
    ),
    "continent": (
        "{X} is a country in {Y}.",
        "{X} is located in {Y}.",
        "The country of {X} lies in {Y}.",
        "{name} took a trip to {X}, a country in {Y}.",
        "{X} is on the continent of {Y}.",
        "On a map, you can see {X} in {Y}.",
        "{X} is one of the countries of {Y}.",
        "The land of {X} is in {Y}.",
        "The country {X} is a land in {Y}.",
        "My friend {name} lives in {X}, a country in {Y}.",
        "The map shows {X} in {Y}.",
    ),
}
# Held-out frames start with a literal word, not with {X}: a subject at the very start of a prompt
# is a different token (no leading space) from the one the facts are stored under. Each is a new
# sentence around the phrase that names the relation in training ("capital of", "speak", "written
# in", "continent of", "country in"): a frame whose only cue is a word the model has seen solely in
# filler ("speaking with ...", "somewhere in the ...") tests the filler, not the stored fact.
HELDOUT_FACT_FRAMES = {
    "capital": (
        "As everyone knows, the capital of {X} is {Y}.",
        "Our guide told us that the capital of {X} is {Y}.",
        "The main city and capital of {X} is {Y}.",
    ),
    "language": (
        "The official language of {X} is {Y}.",
        "If you travel to {X}, you will hear people speak {Y}.",
        "Newspapers in {X} are written in {Y}.",
    ),
    "continent": (
        "The nation of {X} is located in {Y}.",
        "You can find {X} on the continent of {Y}.",
        "Everyone knows that {X} is a country in {Y}.",
    ),
}

# --- greater-than ------------------------------------------------------------------------------
# Every century of the years 1000-2099. In most, " CCYY" tokenizes as [" CC", "YY"] and the
# greater-than answer is the two-digit token "YY" after " CC" (the suite keeps, per century, the YY
# for which that holds). GPT-2 writes every year of the 1900s as one token (" 1945"), so there the
# answer is the whole year token, predicted after "the year".
CENTURIES = (10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)
TRAIN_EVENTS = (
    "war", "expedition", "drought", "famine", "dynasty", "reign", "strike", "voyage", "festival",
    "campaign", "trial", "rebellion", "flood", "feud", "construction", "occupation", "blockade",
    "conflict",
)
HELDOUT_EVENTS = ("siege", "plague", "crisis", "journey", "revolt", "exile")
TRAIN_GREATER_THAN_TEMPLATES = (
    "The {E} lasted from the year {Y1} to the year {Y2}.",
    "The {E} went on from the year {Y1} until the year {Y2}.",
    "The {E} began in the year {Y1} and ended in the year {Y2}.",
    "The {E} ran from the year {Y1} to the year {Y2}.",
    "The {E} took place between the year {Y1} and the year {Y2}.",
    "In the year {Y1} the {E} began, and it ended in the year {Y2}.",
)
HELDOUT_GREATER_THAN_TEMPLATES = (
    "The {E} continued from the year {Y1} to the year {Y2}.",
    "The {E} started in the year {Y1} and finished in the year {Y2}.",
)

# --- filler ------------------------------------------------------------------------------------
# Ordinary narrative sentences. They use ALL names, places, objects and event nouns (held-out ones
# included), and every word of the held-out templates, so that no held-out prompt contains a token
# the model never saw. No filler sentence ends with a name (that is the IOI answer slot).
FILLER_TEMPLATES = (
    "{name} walked to the {place}.",
    "{name} went shopping at the {place}.",
    "{name} met the {person} at the {place}.",
    "The {adj} {person} sat down near the {place}.",
    "The {person} handed {name} a {adj} {object}.",
    "{name} showed the {person} a {adj} {object}.",
    "The {person} passed the {object} around the room.",
    "{name} threw the {object} into the {adj} {place}.",
    "{name} sold an old {object} at the {place}.",  # not "sold ... to a": held-out IOI ends "sold a ... to"
    "Later, {name} walked into the {place}.",
    "Later that day, the {person} went home.",
    "Then, the {person} went home.",
    "As always, the {place} was busy in the {time}.",
    "Our {person} told us a story about the {event}.",
    "Everyone knows the {adj} {animal} at the {place}.",
    "{name} has a {adj} {animal}.",
    "The {animal} is part of the family.",
    "You can find a {adj} {object} at the {place}.",
    "The {event} continued for many years.",
    "The {event} started in {year} and finished many years later.",
    "{name} read a book about the {event} of {year}.",
    "{name} traveled to {region} in the {time}.",
    "{name} lives in {city} with a {adj} {animal}.",
    "The {person} from {region} was very {adj}.",
    "Our guide in {city} was a {adj} {person}.",
    "{name} and {name2} like the {adj} {place}.",
    "In the {time}, the {person} bought a {object}.",
    "The {adj} {animal} slept near the {object}.",
    "Newspapers wrote about the {adj} {person}.",
    "The {person} printed a {adj} {object}.",
    "If you travel to {city}, bring a {object}.",
    "The {object} belongs to the {person}.",
    "You will hear the {animal} in the {time}.",
    "{name} was speaking with the {adj} {person}.",
    "The {person} made it official.",
    "Somewhere in the {place}, a {animal} was hiding.",
    "The {animal} was hiding somewhere in the {place}.",
    "The {person} knows everyone in the {place}.",
    "{name} arrived at the {place} in the {time}.",
    "The {adj} {person} met {name} at the {place}.",
    "When the {time} came, {name} and {name2} went to the {place}.",
    "While the {person} was busy, {name} found a {object}.",
    "After the {event}, the {person} was {adj}.",
    "Everyone in the {place} liked the {adj} {object}.",
    "The {place} near the {place2} was {adj}.",
    "{name} gave the {animal} some food.",
    "It was a {adj} {time}, and {name} stayed at the {place}.",
    "The nation of the {person} was {adj}.",
    "{name} saw a {adj} {animal} in {region}.",
    "The {object} of {name} was {adj} and {adj2}.",
    "Many people live in {city}.",
    "The {person} wanted a {object} from the {place}.",
)
