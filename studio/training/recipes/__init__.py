"""One module per shipped model. RECIPES maps a recipe name to "module:Class", imported lazily so
`studio train --help` never loads torch."""

RECIPES = {
    "prose": "studio.training.recipes.prose:ProseRecipe",
    "emoji-vae": "studio.training.recipes.emoji_vae:EmojiVaeRecipe",
    "emoji-gan": "studio.training.recipes.emoji_gan:EmojiGanRecipe",
    "emoji-sd": "studio.training.recipes.emoji_sd:EmojiSdRecipe",
    "emoji-classifier": "studio.training.recipes.emoji_classifier:EmojiClassifierRecipe",
}
