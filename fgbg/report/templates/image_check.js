window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  document.body.dataset.imagesTotal = String(images.length);
  document.body.dataset.imagesOk = String(images.filter(function (image) {
    return image.complete && image.naturalWidth > 0;
  }).length);
});
