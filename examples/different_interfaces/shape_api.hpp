// The shape interface: geometry on a struct passed by value. The shape module needs no imports.
#pragma once

struct rect {
  double width;
  double height;
};

#define SHAPE_EXPORTS(X)           \
  X(name, const char*())           \
  X(area, double(rect r))          \
  X(perimeter, double(rect r))
